"""Transcoder sets on disk, in circuit-tracer's per-layer layout (no pickle anywhere).

A directory holds ``config.yaml`` and one ``layer_<i>.safetensors`` per layer::

    model_name: gemma-3-270m
    model_kind: transcoder_set
    feature_input_hook: mlp.hook_in      # TransformerLens hook names, as circuit-tracer writes
    feature_output_hook: mlp.hook_out
    transcoders: [layer_0.safetensors, layer_1.safetensors, ...]
    scrying: {schema_version: 1, activation: topk, k: 64}   # what circuit-tracer's files omit

Each file holds ``W_enc`` (feature d_model), ``W_dec`` (feature d_model), ``b_enc``, ``b_dec``,
optionally ``W_skip`` (d_model d_model) and the JumpReLU ``threshold`` (circuit-tracer writes
it as ``activation_function.threshold``; both names are read). Also read: circuit-tracer's
older config (``transcoders`` as a list of ``{id, layer, filepath}``) and its older orientation
(``W_enc`` d_model x feature, ``W_dec`` d_model x feature), told apart by the bias shapes.
Without a ``scrying`` block the activation is JumpReLU when a threshold is stored, else ReLU.
``hf://`` paths are refused (no network here): download the files and point at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from scrying.errors import InvalidInputError
from scrying.sites import Component, Site
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec

SCHEMA_VERSION = 1

#: circuit-tracer's hook names (TransformerLens spelling) -> the sites they mean here.
INPUT_HOOKS: dict[str, Component] = {"mlp.hook_in": Component.MLP_IN, "hook_resid_mid": Component.RESID_MID}
OUTPUT_HOOKS: dict[str, Component] = {"mlp.hook_out": Component.MLP_RESULT, "hook_mlp_out": Component.MLP_OUT}


@dataclass
class TranscoderSet:
    """One transcoder per layer, and the hooks they read and write."""

    transcoders: list[Transcoder]
    model_name: str = ""
    input_hook: str = "mlp.hook_in"
    output_hook: str = "mlp.hook_out"

    def __post_init__(self) -> None:
        if self.input_hook not in INPUT_HOOKS:
            raise InvalidInputError(f"feature_input_hook {self.input_hook!r} is not supported; expected one of {sorted(INPUT_HOOKS)}")
        if self.output_hook not in OUTPUT_HOOKS:
            raise InvalidInputError(f"feature_output_hook {self.output_hook!r} is not supported; expected one of {sorted(OUTPUT_HOOKS)}")
        widths = {t.spec.n_features for t in self.transcoders}
        if not self.transcoders or len(widths) != 1:
            raise InvalidInputError(f"a transcoder set needs >= 1 transcoder, all of one width; got widths {sorted(widths)}")

    @property
    def n_features(self) -> int:
        return self.transcoders[0].spec.n_features

    def input_site(self, layer: int) -> Site:
        return Site(INPUT_HOOKS[self.input_hook], layer)

    def output_site(self, layer: int) -> Site:
        return Site(OUTPUT_HOOKS[self.output_hook], layer)

    def to(self, dtype: torch.dtype) -> TranscoderSet:
        for t in self.transcoders:
            t.to(dtype)
        return self


def write_transcoders(tset: TranscoderSet, directory: str | Path) -> Path:
    """Write ``config.yaml`` and ``layer_<i>.safetensors``; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    spec = tset.transcoders[0].spec
    files = []
    for layer, tc in enumerate(tset.transcoders):
        name = f"layer_{layer}.safetensors"
        save_file({k: v.detach().contiguous().cpu() for k, v in tc.tensors().items()}, str(out / name))
        files.append(name)
    block: dict = {"schema_version": SCHEMA_VERSION, "activation": spec.activation}
    if spec.k is not None:
        block["k"] = spec.k
    config = {
        "model_name": tset.model_name,
        "model_kind": "transcoder_set",
        "feature_input_hook": tset.input_hook,
        "feature_output_hook": tset.output_hook,
        "transcoders": files,
        "scrying": block,
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def read_transcoders(directory: str | Path, *, dtype: torch.dtype = torch.float32) -> TranscoderSet:
    """Read a transcoder directory (see the module docstring for the layouts read)."""
    root = Path(directory)
    path = root / "config.yaml" if root.is_dir() else root
    if not path.is_file():
        raise InvalidInputError(f"no transcoder config at {path} (expected a directory with config.yaml)")
    config = yaml.safe_load(path.read_text()) or {}
    for key in ("feature_input_hook", "feature_output_hook", "transcoders"):
        if key not in config:
            raise InvalidInputError(f"{path}: missing key {key!r}")
    files = _layer_files(config["transcoders"], path)
    block = config.get("scrying") or {}
    if block and block.get("schema_version") != SCHEMA_VERSION:
        raise InvalidInputError(f"{path}: scrying.schema_version {block.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    transcoders = []
    for layer, file in enumerate(files):
        tensors = _normalised(load_file(str(file)), file)
        activation = block.get("activation") or ("jumprelu" if "threshold" in tensors else "relu")
        d_model, n_features = tensors["b_dec"].shape[0], tensors["b_enc"].shape[0]
        spec = TranscoderSpec(d_model=d_model, n_features=n_features, activation=activation, k=block.get("k"), skip="W_skip" in tensors)
        try:
            transcoders.append(Transcoder(spec, dtype=dtype).load_tensors(tensors))
        except InvalidInputError as err:
            raise InvalidInputError(f"{file} (layer {layer}): {err}") from err
    return TranscoderSet(
        transcoders, str(config.get("model_name") or ""), config["feature_input_hook"], config["feature_output_hook"]
    )


def _layer_files(entries: list, config_path: Path) -> list[Path]:
    if not isinstance(entries, list) or not entries:
        raise InvalidInputError(f"{config_path}: 'transcoders' must be a non-empty list")
    if all(isinstance(e, dict) for e in entries):  # circuit-tracer's older {id, layer, filepath}
        by_layer = {int(e["layer"]): e["filepath"] for e in entries}
        if sorted(by_layer) != list(range(len(by_layer))):
            raise InvalidInputError(f"{config_path}: layers {sorted(by_layer)}, expected 0..{len(by_layer) - 1}")
        entries = [by_layer[i] for i in range(len(by_layer))]
    paths = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidInputError(f"{config_path}: a transcoder entry must be a path, got {entry!r}")
        if entry.startswith("hf://"):
            raise InvalidInputError(f"{config_path}: {entry!r} is a hub address; download it and give the local path")
        file = Path(entry) if Path(entry).is_absolute() else config_path.parent / entry
        if not file.is_file():
            raise InvalidInputError(f"{config_path}: transcoder file {file} does not exist")
        paths.append(file)
    return paths


def _normalised(tensors: dict[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    """Our names and orientation (``W_enc``/``W_dec`` feature x d_model, ``threshold``)."""
    out = dict(tensors)
    if "activation_function.threshold" in out:
        out["threshold"] = out.pop("activation_function.threshold")
    for key in ("W_enc", "W_dec", "b_enc", "b_dec"):
        if key not in out:
            raise InvalidInputError(f"{file}: missing tensor {key!r} (has {sorted(tensors)})")
    n_features, d_model = out["b_enc"].shape[0], out["b_dec"].shape[0]
    for key in ("W_enc", "W_dec"):
        shape = tuple(out[key].shape)
        if shape == (d_model, n_features) and d_model != n_features:
            out[key] = out[key].T.contiguous()
        elif shape != (n_features, d_model):
            raise InvalidInputError(f"{file}: {key} has shape {shape}, expected ({n_features}, {d_model})")
    return out
