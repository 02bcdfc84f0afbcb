"""The published dictionary formats, one reader each: a header check, then the tensors in
scrying's names and orientation (:mod:`scrying.transcoders.transcoder`: ``W_enc``/``W_dec``
feature x d_model, skip applied as ``x @ W_skip.T``). No pickle: npz is read with
``allow_pickle=False``, safetensors with ``safe_open``, configs with ``json``.

What each format is, and where it was verified (sources read, not guessed):

**Gemma Scope** (Gemma 2 transcoders, ``google/gemma-scope-2b-pt-transcoders``:
``layer_<L>/width_<W>/average_l0_<N>/params.npz``). Arrays ``W_enc`` (d_model, d_sae), ``W_dec``
(d_sae, d_model), ``b_enc``, ``b_dec``, ``threshold``; ``relu(pre) * (pre > threshold)`` with
``pre = x @ W_enc + b_enc`` (Google's Gemma Scope tutorial ``JumpReLUSAE``, copied by
circuit-tracer's ``load_gemma_scope_transcoder`` and SAELens's ``gemma_2_transcoder`` loader). No
skip; the layer is only in the path (``layer_<L>``). Sites, from the repository's README (commit
50eec2f, quoting arXiv:2408.05147v2 p. 18): the pre-MLP RMSNorm gain is folded into the MLP and
the transcoder reads the activation "just after the pre-MLP RMSNorm", i.e. *without* the gain
(TransformerLens ``ln2.hook_normalized`` with ``fold_ln=False``, which circuit-tracer's and
SAELens's configs name); it writes the MLP output as added to the residual stream, after Gemma 2's
post-MLP RMSNorm (``hook_mlp_out``). scrying's ``mlp.hook_in`` carries the gain, so these read as
input ``ln2.hook_normalized`` until :func:`~scrying.transcoders.published.fold_input_gain` folds it.

**Gemma Scope 2** (Gemma 3, ``google/gemma-scope-2-<size>-<pt|it>``:
``transcoder_all/layer_<L>_width_<W>_l0_<N>[_affine]/{config.json, params.safetensors}``).
``config.json``: ``type`` (``transcoder``; ``sae``; ``clt`` is cross-layer, refused),
``architecture`` ``jump_relu``, ``affine_connection``, ``hf_hook_point_in`` /
``hf_hook_point_out`` (``model.layers.<L>.pre_feedforward_layernorm.output`` ->
``model.layers.<L>.post_feedforward_layernorm.output`` for transcoders), ``width``,
``model_name``. Tensors ``w_enc`` (d_model, width), ``w_dec`` (width, d_model), ``b_enc``,
``b_dec``, ``threshold`` and, when affine, ``affine_skip_connection`` (d_model, d_model). Google's
Gemma Scope 2 tutorial adds ``x @ affine_skip_connection``, so ``W_skip`` here is its transpose.
circuit-tracer 4bb8c0e agrees in both its readers (``load_gemma_scope_2_transcoder`` stores the
transpose and adds ``x @ W_skip.T``; ``load_gemma_scope_2_clt`` stores it as is and adds
``x @ W_skip``). SAELens 6.51's ``gemma_3_sae_huggingface_loader`` alone differs: it copies the
matrix untransposed into a ``W_skip`` it applies as ``x @ W_skip.T`` (the two disagree unless the
matrix is symmetric). This module follows Google and circuit-tracer; not verified here against
the real weights. The hook points are the Hugging
Face modules' outputs: the pre-MLP norm's (gain applied: scrying's ``mlp.hook_in``) and the
post-MLP norm's (``hook_mlp_out``); the tests check both equalities on a tiny Gemma 3.

The SAELens format is read by :mod:`scrying.transcoders.saelens_format`.

Exact folds into scrying's one form ``pre * mask``: a ``relu(pre) * (pre > t)`` JumpReLU is
``pre * (pre > max(t, 0))``; SAELens's ``apply_b_dec_to_input`` (``x - b_dec`` encoded) is
``b_enc - W_enc b_dec``; ``rescale_acts_by_decoder_norm`` (TopK on ``pre * |W_dec_i|``, decoded
through ``W_dec_i / |W_dec_i|``) scales encoder row and bias by ``|W_dec_i|`` and divides the
decoder row by it. Anything else that would change the function (activation normalisation,
``hook_z`` reshaping, a fine-tuning scale other than 1) is refused by name.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from scrying.errors import ConfigError, InvalidInputError
from scrying.transcoders.file_checks import FLOAT_DTYPES, check_finite, one_line, show
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec

GEMMA_SCOPE, GEMMA_SCOPE_2, SAELENS = "gemma-scope", "gemma-scope-2", "saelens"
_NPZ_FLOATS = ("<f2", "<f4", "<f8")
LAYER = r"(0|[1-9][0-9]{0,4})"
#: Hugging Face module outputs (Gemma Scope 2's hook points) -> the hook names used here.
HF_HOOKS = {"pre_feedforward_layernorm.output": "mlp.hook_in", "post_feedforward_layernorm.output": "hook_mlp_out",
            "output": "hook_resid_post", "self_attn.o_proj.input": "attn.hook_z"}


@dataclass(frozen=True)
class PublishedUnit:
    """One published dictionary (one layer), as its config and headers describe it."""

    format: str
    path: Path  # the weights file
    layer: int
    model_name: str
    kind: str  # "transcoder" or "sae"
    input_hook: str
    output_hook: str
    spec: TranscoderSpec
    stored: dict[str, str]  # our tensor name -> its name in the file
    fold_b_dec: bool = False  # SAELens apply_b_dec_to_input
    rescale_by_decoder_norm: bool = False  # SAELens TopK rescale_acts_by_decoder_norm


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except OSError as err:
        raise InvalidInputError(f"{path}: cannot be read ({one_line(err)})") from err
    except (ValueError, RecursionError) as err:
        raise InvalidInputError(f"{path}: not JSON ({one_line(err)})") from err
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object, got {show(data)}")
    return data


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: (str(handle.get_slice(k).get_dtype()), tuple(int(n) for n in handle.get_slice(k).get_shape()))
                    for k in handle.keys()}
    except Exception as err:  # SafetensorError, OSError, ... whatever the bytes
        raise InvalidInputError(f"{path}: not a readable safetensors file ({one_line(err)})") from err


def _npz_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Array name -> (dtype, shape) from each member's .npy header; no data, no pickle."""
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as member:
                    version = np.lib.format.read_magic(member)
                    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                    if version not in read:
                        raise ValueError(f"{name}: .npy format version {version}, expected 1.0 or 2.0")
                    shape, _, dtype = read[version](member)  # (shape, fortran order, dtype)
                    declared, held = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, archive.getinfo(name).file_size
                    if declared > held:  # refused before np.load allocates what the header claims
                        raise ValueError(f"{name} declares {declared} bytes of data and holds {held}")
                out[name.removesuffix(".npy")] = (dtype.str, tuple(shape))
    except Exception as err:  # BadZipFile, ValueError from a bad .npy header, OSError
        raise InvalidInputError(f"{path}: not a readable npz file ({one_line(err)})") from err
    return out


def check_names(path: Path, header: dict, want: dict[str, str | None], floats: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Check names and dtypes against ``want`` (file name -> our name; None for a tensor that
    may be there but is not a weight); return our name -> shape."""
    missing = [k for k, v in want.items() if v is not None and k not in header]
    unknown = sorted(set(header) - set(want))
    if missing or unknown:
        raise InvalidInputError(f"{path}: arrays {sorted(header)}; expected {sorted(want)} (missing {missing}, unexpected {unknown})")
    for key, (dtype, _) in header.items():
        if dtype not in floats:
            raise InvalidInputError(f"{path}: {key!r} has dtype {dtype}, expected one of {floats}")
    return {want[k]: shape for k, (_, shape) in header.items() if want.get(k) is not None}


def check_matrices(path: Path, shape: dict[str, tuple[int, ...]], stored: dict[str, str], enc: str, dec: str) -> tuple[int, int]:
    """``b_enc``/``b_dec`` fix (feature, d_model); the matrices must have the stored orientation
    ``enc``/``dec`` ("df": d_model x feature, "fd": feature x d_model). A matrix in the other
    orientation is named as transposed (where the shapes tell the two apart)."""
    for bias, axis in (("b_enc", "feature"), ("b_dec", "d_model")):
        if len(shape[bias]) != 1 or shape[bias][0] < 1:
            raise InvalidInputError(f"{path}: {stored[bias]!r} has shape {shape[bias]}, expected ({axis},)")
    f, d = shape["b_enc"][0], shape["b_dec"][0]
    for name, order in (("W_enc", enc), ("W_dec", dec)):
        want = (d, f) if order == "df" else (f, d)
        if shape[name] != want:
            hint = " (transposed?)" if shape[name] == want[::-1] else ""
            raise InvalidInputError(f"{path}: {stored[name]!r} has shape {shape[name]}, expected {want}{hint}")
    for name, want in (("W_skip", (d, d)), ("threshold", (f,))):
        if name in shape and shape[name] != want:
            raise InvalidInputError(f"{path}: {stored[name]!r} has shape {shape[name]}, expected {want}")
    return f, d


def make_spec(path: Path, **kwargs: Any) -> TranscoderSpec:
    try:
        return TranscoderSpec(**kwargs)
    except ConfigError as err:
        raise InvalidInputError(f"{path}: {err}") from err


def inspect_gemma_scope(path: Path, layer: int) -> PublishedUnit:
    """A Gemma Scope ``params.npz`` (its layer read from the path by the caller)."""
    want: dict[str, str | None] = {n: n for n in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")}
    shape = check_names(path, _npz_header(path), want, _NPZ_FLOATS)
    stored = {n: n for n in shape}
    f, d = check_matrices(path, shape, stored, "df", "fd")
    spec = make_spec(path, d_model=d, n_features=f, activation="jumprelu")
    return PublishedUnit(GEMMA_SCOPE, path, layer, "", "transcoder", "ln2.hook_normalized", "hook_mlp_out", spec, stored)


def hf_hook(config_path: Path, key: str, value: object) -> tuple[int, str]:
    match = re.fullmatch(rf"model\.layers\.{LAYER}\.(.+)", value) if isinstance(value, str) else None
    if match is None or match[2] not in HF_HOOKS:
        raise InvalidInputError(
            f"{config_path}: {key} {show(value)}, expected model.layers.<L>.<module> with <module> one of {sorted(HF_HOOKS)}"
        )
    return int(match[1]), HF_HOOKS[match[2]]


def inspect_gemma_scope_2(folder: Path) -> PublishedUnit:
    """A Gemma Scope 2 folder: ``config.json`` and ``params.safetensors``."""
    config_path, path = folder / "config.json", folder / "params.safetensors"
    config = read_json(config_path)
    kind = config.get("type", "sae")
    if kind not in ("transcoder", "sae"):
        raise InvalidInputError(
            f"{config_path}: type {show(kind)}; expected 'transcoder' or 'sae' ('clt' and crosscoders read or write several layers)"
        )
    if config.get("architecture") != "jump_relu":
        raise InvalidInputError(f"{config_path}: architecture {show(config.get('architecture'))}, expected 'jump_relu'")
    affine = config.get("affine_connection", False)
    if not isinstance(affine, bool):
        raise InvalidInputError(f"{config_path}: affine_connection {show(affine)}, expected true or false")
    layer, hook_in = hf_hook(config_path, "hf_hook_point_in", config.get("hf_hook_point_in"))
    out_layer, hook_out = hf_hook(config_path, "hf_hook_point_out", config.get("hf_hook_point_out", config.get("hf_hook_point_in")))
    if out_layer != layer:
        raise InvalidInputError(f"{config_path}: reads layer {layer} and writes layer {out_layer}; expected one layer")
    want: dict[str, str | None] = {"w_enc": "W_enc", "w_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec",
                                   "threshold": "threshold", "affine_skip_connection": "W_skip" if affine else None}
    header = safetensors_header(path)
    if not affine and "affine_skip_connection" in header:
        raise InvalidInputError(f"{path}: holds 'affine_skip_connection' but {config_path} says affine_connection false")
    shape = check_names(path, header, want, FLOAT_DTYPES)
    stored = {ours: theirs for theirs, ours in want.items() if ours is not None}
    f, d = check_matrices(path, shape, stored, "df", "fd")
    width, model_name = config.get("width", f), config.get("model_name", "")
    if width != f or not isinstance(model_name, str):
        raise InvalidInputError(f"{config_path}: width {show(width)} and model_name {show(model_name)}; expected {f} (b_enc's length) and a string")
    spec = make_spec(path, d_model=d, n_features=f, activation="jumprelu", skip=affine)
    return PublishedUnit(GEMMA_SCOPE_2, path, layer, model_name, kind, hook_in, hook_out, spec, stored)


def _tensors(unit: PublishedUnit) -> dict[str, torch.Tensor]:
    """The stored tensors by file name, in float64 for the folds."""
    try:
        if unit.format == GEMMA_SCOPE:
            with np.load(unit.path, allow_pickle=False) as data:
                return {k: torch.from_numpy(np.array(data[k], dtype=np.float64)) for k in data.files}
        with safe_open(str(unit.path), framework="pt") as handle:
            return {k: handle.get_tensor(k).to(torch.float64) for k in handle.keys()}
    except Exception as err:  # the bytes changed since the header was read, or never matched it
        raise InvalidInputError(f"{unit.path}: the tensors cannot be read ({one_line(err)})") from err


def read_unit(unit: PublishedUnit, dtype: torch.dtype = torch.float32) -> Transcoder:
    """The weights of ``unit`` as a scrying :class:`Transcoder` (the folds of the module
    docstring applied in float64, then cast to ``dtype``)."""
    raw = _tensors(unit)
    scale = raw.pop("scaling_factor", None)
    if scale is not None and not bool((scale == 1).all()):
        raise InvalidInputError(f"{unit.path}: 'scaling_factor' is not all ones; a fine-tuning scale is not read")
    t = {ours: raw[theirs] for ours, theirs in unit.stored.items()}
    t["W_enc"] = t["W_enc"].T  # every published format stores it d_model x feature
    if unit.format == GEMMA_SCOPE_2 and "W_skip" in t:
        t["W_skip"] = t["W_skip"].T  # Google adds x @ affine_skip_connection; ours adds x @ W_skip.T
    if unit.fold_b_dec:
        t["b_enc"] = t["b_enc"] - t["W_enc"] @ t["b_dec"]
    if unit.rescale_by_decoder_norm:
        norm = t["W_dec"].norm(dim=-1)
        t["W_enc"], t["b_enc"], t["W_dec"] = t["W_enc"] * norm[:, None], t["b_enc"] * norm, t["W_dec"] / norm[:, None]
    if "threshold" in t:
        t["threshold"] = t["threshold"].clamp(min=0)  # relu(pre) * (pre > t) == pre * (pre > max(t, 0))
    tc = Transcoder(unit.spec, dtype=dtype).load_tensors({k: v.contiguous() for k, v in t.items()})
    check_finite(tc, str(unit.path), unit.stored)
    return tc
