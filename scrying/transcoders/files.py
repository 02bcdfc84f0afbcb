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
``hf://`` paths are refused (no network here): download the files and point at them
(:func:`~scrying.transcoders.hub.download_published` does, when asked). A folder without
``config.yaml`` that holds published dictionaries (Gemma Scope, Gemma Scope 2, SAELens) is read by
:mod:`scrying.transcoders.published` instead. Files a
config names must lie inside its directory (symlinks resolved). What a valid directory is lives
in :mod:`scrying.transcoders.file_checks`, whose ``check_transcoders`` is the cheap pre-flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from scrying.errors import InvalidInputError
from scrying.sites import Site
from scrying.transcoders.file_checks import (
    INPUT_HOOKS,
    OUTPUT_HOOKS,
    SCHEMA_VERSION,
    LayerFile,
    check_finite,
    config_path,
    inspect_transcoders,
    one_line,
)
from scrying.transcoders.published import (
    check_set_hooks,
    inspect_published,
    is_published,
    read_published_set,
)
from scrying.transcoders.transcoder import Transcoder


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

    def check_feature(self, layer: int, index: int) -> None:
        """Raise :class:`InvalidInputError` unless feature ``index`` of ``layer`` exists here."""
        if not (0 <= layer < len(self.transcoders) and 0 <= index < self.n_features):
            raise InvalidInputError(f"feature {layer}:{index} is not in a set of {len(self.transcoders)} layers x {self.n_features}")

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
    """Read a transcoder directory (see the module docstring for the layouts read), or, where
    it has no ``config.yaml``, a folder of published dictionaries, one per layer (Gemma Scope,
    Gemma Scope 2, SAELens: :mod:`scrying.transcoders.published`, checked the same way first).

    Checks the directory first with :func:`~scrying.transcoders.file_checks.check_transcoders`'s
    phases (config, paths inside the directory, headers), then reads the weights and refuses
    non-finite ones (NaN anywhere, or inf outside the JumpReLU threshold) in ``dtype``. Only
    ``InvalidInputError`` is raised, naming the file and layer."""
    if not config_path(directory).is_file() and is_published(directory):
        published = inspect_published(directory)
        check_set_hooks(published)
        transcoders = read_published_set(published, dtype)
        return TranscoderSet(transcoders, published.model_name, published.input_hook, published.output_hook)
    layout = inspect_transcoders(directory)
    return TranscoderSet([_load(lf, dtype) for lf in layout.layers], layout.model_name, layout.input_hook, layout.output_hook)


def _load(layer: LayerFile, dtype: torch.dtype) -> Transcoder:
    """One layer's weights, in our names and orientation (``W_enc``/``W_dec`` feature x d_model)."""
    where = f"{layer.path} (layer {layer.layer})"
    try:
        with safe_open(str(layer.path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(stored) for name, stored in layer.stored.items()}
    except Exception as err:  # SafetensorError, OSError, ... whatever the bytes
        raise InvalidInputError(f"{where}: the tensors cannot be read ({one_line(err)})") from err
    for name in layer.transposed:
        tensors[name] = tensors[name].T.contiguous()
    try:
        tc = Transcoder(layer.spec, dtype=dtype).load_tensors(tensors)
    except InvalidInputError as err:  # the file changed since its header was checked
        raise InvalidInputError(f"{where}: {err}") from err
    check_finite(tc, where, layer.stored)
    return tc
