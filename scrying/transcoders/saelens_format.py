"""SAELens saves read as scrying transcoders (see :mod:`scrying.transcoders.published_formats`
for the other published formats, the folds and the reader of the tensors).

**SAELens** (``SAE.save_model`` in sae_lens 6.x: ``cfg.json`` = ``cfg.to_dict()``,
``sae_weights.safetensors`` = the state dict). ``W_enc`` (d_in, d_sae), ``W_dec`` (d_sae, d_out),
``b_enc``, ``b_dec``, ``threshold`` (jumprelu), ``W_skip`` (d_out, d_in, applied ``x @ W_skip.T``).
Read: ``standard``, ``jumprelu``, ``topk`` SAEs and ``transcoder``, ``skip_transcoder``,
``jumprelu_transcoder``, ``jumprelu_skip_transcoder``. Hooks from ``metadata.hf_hook_name`` where
present, else ``metadata.hook_name`` (``blocks.<L>.<hook>``, TransformerLens names).
A config saved before SAELens 6 (no ``architecture``; ``activation_fn`` ``relu`` or ``topk``, the
hook at the top level or as ``hook_point``) is read the way SAELens 6's ``handle_pre_6_0_config``
reads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from scrying.errors import InvalidInputError
from scrying.transcoders.file_checks import FLOAT_DTYPES, show
from scrying.transcoders.published_formats import (
    LAYER,
    SAELENS,
    PublishedUnit,
    check_matrices,
    check_names,
    hf_hook,
    make_spec,
    read_json,
    safetensors_header,
)

#: TransformerLens hook names in SAELens configs -> the hook names used here (``hook_mlp_in``
#: carries ``resid_mid`` in TransformerLens: the MLP sublayer's input before its norm).
TL_HOOKS = {"hook_mlp_in": "hook_resid_mid"}
_SAELENS_ARCHS = {  # architecture -> (activation, skip, transcoder)
    "standard": ("relu", False, False), "jumprelu": ("jumprelu", False, False), "topk": ("topk", False, False),
    "transcoder": ("relu", False, True), "skip_transcoder": ("relu", True, True),
    "jumprelu_transcoder": ("jumprelu", False, True), "jumprelu_skip_transcoder": ("jumprelu", True, True),
}


def _meta(config: dict[str, Any], key: str) -> object:
    """A field of a SAELens config: ``metadata.<key>`` (6.x) or top level (older saves)."""
    metadata = config.get("metadata")
    if isinstance(metadata, dict) and metadata.get(key) is not None:
        return metadata[key]
    return config.get(key)


def _saelens_hook(config_path: Path, config: dict[str, Any], out: bool) -> tuple[int, str]:
    suffix = "_out" if out else ""
    hf = _meta(config, f"hf_hook_name{suffix}")
    if hf is not None:
        return hf_hook(config_path, f"metadata.hf_hook_name{suffix}", hf)
    name = _meta(config, f"hook_name{suffix}") or (None if out else config.get("hook_point"))
    if name is None and out:
        return _saelens_hook(config_path, config, False)  # an SAE writes what it reads
    match = re.fullmatch(rf"blocks\.{LAYER}\.(.+)", name) if isinstance(name, str) else None
    if match is None:
        raise InvalidInputError(f"{config_path}: hook_name{suffix} {show(name)}, expected blocks.<L>.<hook> (a per-layer hook)")
    return int(match[1]), TL_HOOKS.get(match[2], match[2])


def _int(config_path: Path, config: dict[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(f"{config_path}: {key} {show(value)}, expected a positive integer")
    return value


def inspect_saelens(folder: Path) -> PublishedUnit:
    """A folder SAELens saved: ``cfg.json`` and ``sae_weights.safetensors``."""
    config_path, path = folder / "cfg.json", folder / "sae_weights.safetensors"
    config = read_json(config_path)
    arch = config.get("architecture")
    if arch is None:  # before SAELens 6: activation_fn(_str) said it
        act = config.get("activation_fn", config.get("activation_fn_str", "relu"))
        arch = {"relu": "standard", "topk": "topk"}.get(act) if isinstance(act, str) else None
    if not isinstance(arch, str) or arch not in _SAELENS_ARCHS:
        raise InvalidInputError(f"{config_path}: architecture {show(config.get('architecture'))}, expected one of {sorted(_SAELENS_ARCHS)}")
    activation, skip, transcoder = _SAELENS_ARCHS[arch]
    for key, fine in (("normalize_activations", (None, False, "none")), ("reshape_activations", (None, "none")),
                      ("hook_head_index", (None,)), ("finetuning_scaling_factor", (None, False))):
        value = _meta(config, key) if key == "hook_head_index" else config.get(key)
        if value not in fine:
            raise InvalidInputError(f"{config_path}: {key} {show(value)} changes what the dictionary computes; expected {fine[-1]!r}")
    d_in, d_sae = _int(config_path, config, "d_in"), _int(config_path, config, "d_sae")
    d_out = _int(config_path, config, "d_out") if transcoder else d_in
    if d_out != d_in:
        raise InvalidInputError(f"{config_path}: d_in {d_in} and d_out {d_out}; expected one d_model (scrying transcoders map d_model to d_model)")
    fold_b_dec = config.get("apply_b_dec_to_input", not transcoder)  # SAELens's default for a config without it
    rescale = config.get("rescale_acts_by_decoder_norm", False)
    if not isinstance(fold_b_dec, bool) or not isinstance(rescale, bool) or (transcoder and fold_b_dec):
        raise InvalidInputError(f"{config_path}: apply_b_dec_to_input {show(fold_b_dec)} / rescale_acts_by_decoder_norm {show(rescale)}; expected booleans (and no b_dec on a transcoder's input)")
    k = None
    if activation == "topk":
        kwargs = config.get("activation_fn_kwargs")
        k = config.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= d_sae:
            raise InvalidInputError(f"{config_path}: k {show(k)}, expected an integer in 1..{d_sae}")
    layer, hook_in = _saelens_hook(config_path, config, False)
    out_layer, hook_out = _saelens_hook(config_path, config, True)
    if out_layer != layer:
        raise InvalidInputError(f"{config_path}: reads layer {layer} and writes layer {out_layer}; expected one layer")
    names = ["W_enc", "W_dec", "b_enc", "b_dec"] + ["threshold"] * (activation == "jumprelu") + ["W_skip"] * skip
    want: dict[str, str | None] = {n: n for n in names}
    want["scaling_factor"] = None  # older saves keep an all-ones scale; checked when read
    shape = check_names(path, safetensors_header(path), want, FLOAT_DTYPES)
    stored = {n: n for n in names}
    f, d = check_matrices(path, shape, stored, "df", "fd")
    if (f, d) != (d_sae, d_in):
        raise InvalidInputError(f"{path}: b_enc/b_dec say d_sae {f}, d_model {d}; {config_path} says d_sae {d_sae}, d_in {d_in}")
    model_name = _meta(config, "model_name") or ""
    if not isinstance(model_name, str):
        raise InvalidInputError(f"{config_path}: model_name {show(model_name)}, expected a string")
    spec = make_spec(path, d_model=d, n_features=f, activation=activation, k=k, skip=skip)
    kind = "transcoder" if transcoder else "sae"
    return PublishedUnit(SAELENS, path, layer, model_name, kind, hook_in, hook_out, spec, stored, fold_b_dec, rescale)
