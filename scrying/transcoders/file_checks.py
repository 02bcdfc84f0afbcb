"""What a valid transcoder directory is, checked from its config and safetensors headers alone.

:func:`check_transcoders` is the cheap pre-flight a command runs before it loads a model. Phases:

1. **Config** — ``config.yaml`` is parsed with ``yaml.safe_load`` (no Python tags) and must be
   a mapping with supported hooks, an optional ``scrying`` block (``schema_version``,
   ``activation``, ``k``) and a non-empty ``transcoders`` list (paths, or circuit-tracer's older
   ``{id, layer, filepath}`` entries with layers 0..n-1).
2. **Paths** — every file a config names must resolve (symlinks followed) inside the config's
   directory; ``..`` or an absolute path elsewhere is refused by name, as are ``hf://`` addresses.
3. **Headers** — each file's safetensors header (read with ``safe_open``; no weights) must hold
   float tensors ``W_enc``, ``W_dec``, ``b_enc``, ``b_dec`` (optionally ``W_skip`` and the
   JumpReLU ``threshold``) of consistent shapes, one ``d_model`` and one width for all layers.
4. **Labels** — ``labels.json`` beside the config, when there is one (see :func:`read_label_file`).

:func:`inspect_transcoders` returns what phases 1-3 found (a :class:`TranscoderLayout`), which
:func:`~scrying.transcoders.files.read_transcoders` then loads; a directory that passes fails
to load only for its values (non-finite weights) or if it changed in between. Every parser of
untrusted bytes (YAML, safetensors, JSON) is wrapped: the only errors are ``InvalidInputError``,
each naming the file (and the layer or key) and what was expected.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

from scrying.errors import ConfigError, InvalidInputError
from scrying.sites import Component
from scrying.transcoders.transcoder import ACTIVATIONS, Transcoder, TranscoderSpec

SCHEMA_VERSION = 1  # of the ``scrying`` block in config.yaml
LABELS_SCHEMA_VERSION = 2  # of labels.json (1, contexts as text without the activating token, is read too)

#: circuit-tracer's hook names (TransformerLens spelling) -> the sites they mean here.
INPUT_HOOKS: dict[str, Component] = {"mlp.hook_in": Component.MLP_IN, "hook_resid_mid": Component.RESID_MID}
OUTPUT_HOOKS: dict[str, Component] = {"mlp.hook_out": Component.MLP_RESULT, "hook_mlp_out": Component.MLP_OUT}

FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names of the dtypes read
TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "W_skip", "threshold")  # our names; last two optional
THRESHOLD_NAMES = ("threshold", "activation_function.threshold")  # both spellings are read
_LABEL_KEY = re.compile(r"(0|[1-9][0-9]{0,8}):(0|[1-9][0-9]{0,8})")

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def show(value: object) -> str:
    """A short repr of a value read from a file (for messages)."""
    return _short.repr(value)


def one_line(err: BaseException) -> str:
    """A third-party error's message on one short line."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LayerFile:
    """One layer's file, as its header describes it."""

    layer: int
    path: Path
    spec: TranscoderSpec
    stored: dict[str, str]  # our tensor name -> its name in the file
    transposed: frozenset[str]  # W_enc / W_dec stored d_model x feature (the older orientation)


@dataclass(frozen=True)
class TranscoderLayout:
    """A checked transcoder directory: its config's fields and one :class:`LayerFile` a layer."""

    config: Path
    model_name: str
    input_hook: str
    output_hook: str
    layers: list[LayerFile]


def config_path(directory: str | Path) -> Path:
    """``directory/config.yaml``, or ``directory`` itself when it is the config file."""
    root = Path(directory)
    return root / "config.yaml" if root.is_dir() else root


def labels_path(directory: str | Path) -> Path:
    """``labels.json`` beside the config of ``directory`` (a directory or its config file)."""
    root = Path(directory)
    return root.parent / "labels.json" if root.is_file() else root / "labels.json"


def check_transcoders(directory: str | Path) -> None:
    """Refuse, before any model loads, a transcoder directory that ``read_transcoders`` would
    refuse for its form, or a ``labels.json`` that ``read_labels`` would refuse. Reads the
    config, each layer file's safetensors header and labels.json; no weights."""
    inspect_transcoders(directory)
    read_label_file(labels_path(directory))


def inspect_transcoders(directory: str | Path) -> TranscoderLayout:
    """Phases 1-3 of the module docstring; raises ``InvalidInputError`` on the first problem."""
    path = config_path(directory)
    config = _read_config(path)
    for key in ("feature_input_hook", "feature_output_hook", "transcoders"):
        if key not in config:
            raise InvalidInputError(f"{path}: missing key {key!r}")
    hooks = []
    for key, known in (("feature_input_hook", INPUT_HOOKS), ("feature_output_hook", OUTPUT_HOOKS)):
        if not isinstance(config[key], str) or config[key] not in known:
            raise InvalidInputError(f"{path}: {key} {show(config[key])} is not supported; expected one of {sorted(known)}")
        hooks.append(config[key])
    model_name = config.get("model_name")
    if model_name is not None and not isinstance(model_name, str):
        raise InvalidInputError(f"{path}: model_name {show(model_name)}, expected a string")
    if config.get("model_kind", "transcoder_set") != "transcoder_set":
        raise InvalidInputError(f"{path}: model_kind {show(config['model_kind'])}, expected 'transcoder_set' (one transcoder per layer)")
    activation, k = _scrying_block(config.get("scrying"), path)
    files = _layer_files(config["transcoders"], path)
    layers = [_layer(i, file, activation, k, path) for i, file in enumerate(files)]
    for field in ("d_model", "n_features"):
        values = {getattr(lf.spec, field) for lf in layers}
        if len(values) > 1:
            each = ", ".join(f"layer {lf.layer} ({lf.path.name}): {getattr(lf.spec, field)}" for lf in layers)
            raise InvalidInputError(f"{path}: the layer files disagree on {field} ({each}); expected one {field} for all")
    return TranscoderLayout(path, model_name or "", hooks[0], hooks[1], layers)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise InvalidInputError(
            f"no transcoder config at {path} (expected a directory with config.yaml, or a folder of "
            "Gemma Scope, Gemma Scope 2 or SAELens dictionaries)"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"{path}: cannot be read ({one_line(err)})") from err
    try:
        config = yaml.safe_load(data)
    except Exception as err:  # YAMLError, and ValueError / RecursionError from safe_load's constructors
        raise InvalidInputError(f"{path}: not a YAML transcoder config ({one_line(err)})") from err
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path}: expected a YAML mapping (feature_input_hook, ...), got {type(config).__name__} {show(config)}")
    return config


def _scrying_block(block: object, path: Path) -> tuple[str | None, int | None]:
    """The ``scrying`` block's (activation, k); (None, None) when it is absent or empty."""
    if block is None:
        return None, None
    if not isinstance(block, dict):
        raise InvalidInputError(f"{path}: 'scrying' must be a mapping (schema_version, activation, k), got {show(block)}")
    if not block:
        return None, None
    version = block.get("schema_version")
    if not _is_int(version) or version != SCHEMA_VERSION:
        raise InvalidInputError(f"{path}: scrying.schema_version {show(version)}, expected {SCHEMA_VERSION}")
    activation, k = block.get("activation"), block.get("k")
    if activation is not None and (not isinstance(activation, str) or activation not in ACTIVATIONS):
        raise InvalidInputError(f"{path}: scrying.activation {show(activation)}, expected one of {ACTIVATIONS}")
    if k is not None and (not _is_int(k) or k < 1):
        raise InvalidInputError(f"{path}: scrying.k {show(k)}, expected a positive integer")
    return activation, k


def _layer_files(entries: object, path: Path) -> list[Path]:
    if not isinstance(entries, list) or not entries:
        raise InvalidInputError(f"{path}: 'transcoders' must be a non-empty list, got {show(entries)}")
    if any(isinstance(e, dict) for e in entries):  # circuit-tracer's older {id, layer, filepath}
        by_layer: dict[int, object] = {}
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict) or "layer" not in entry or "filepath" not in entry:
                raise InvalidInputError(
                    f"{path}: transcoders[{n}] is {show(entry)}; expected every entry a path, or every entry {{id, layer, filepath}}"
                )
            layer = entry["layer"]
            if not _is_int(layer) or layer < 0 or layer in by_layer:
                raise InvalidInputError(f"{path}: transcoders[{n}].layer {show(layer)}, expected a new integer >= 0")
            by_layer[layer] = entry["filepath"]
        if sorted(by_layer) != list(range(len(by_layer))):
            raise InvalidInputError(f"{path}: layers {sorted(by_layer)}, expected 0..{len(by_layer) - 1}")
        entries = [by_layer[i] for i in range(len(by_layer))]
    return [_inside(entry, path) for entry in entries]


def _inside(entry: object, path: Path) -> Path:
    """The file an entry names, resolved; refused unless it is a file inside the directory."""
    if not isinstance(entry, str):
        raise InvalidInputError(f"{path}: a transcoder entry must be a path, got {show(entry)}")
    if entry.startswith("hf://"):
        raise InvalidInputError(f"{path}: {entry!r} is a hub address; download it and give the local path")
    try:
        root = path.parent.resolve()
        file = (path.parent / entry).resolve()  # an absolute entry replaces the parent
        inside = file.is_relative_to(root)
        exists = inside and file.is_file()
    except (OSError, RuntimeError, ValueError) as err:  # NUL bytes, symlink loops, long names
        raise InvalidInputError(f"{path}: transcoder file {show(entry)} cannot be resolved ({one_line(err)})") from err
    if not inside:
        raise InvalidInputError(
            f"{path}: transcoder file {entry!r} resolves to {file}, outside the directory {root}; "
            "expected the layer files inside the transcoder directory"
        )
    if not exists:
        raise InvalidInputError(f"{path}: transcoder file {file} does not exist (entry {show(entry)})")
    return file


def _header(file: Path, where: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (safetensors dtype, shape), from the header only."""
    try:
        with safe_open(str(file), framework="pt") as handle:
            out = {}
            for name in handle.keys():
                part = handle.get_slice(name)
                out[name] = (str(part.get_dtype()), tuple(int(n) for n in part.get_shape()))
            return out
    except Exception as err:  # SafetensorError, OSError, ... whatever the bytes
        raise InvalidInputError(f"{where}: not a readable safetensors file ({one_line(err)})") from err


def _layer(layer: int, file: Path, activation: str | None, k: int | None, path: Path) -> LayerFile:
    where = f"{file} (layer {layer})"
    header = _header(file, where)
    if all(name in header for name in THRESHOLD_NAMES):
        raise InvalidInputError(f"{where}: holds both {THRESHOLD_NAMES}; expected one threshold")
    stored = {("threshold" if name in THRESHOLD_NAMES else name): name for name in header}
    unknown, missing = sorted(set(stored) - set(TENSORS)), [n for n in TENSORS[:4] if n not in stored]
    if unknown or missing:
        raise InvalidInputError(
            f"{where}: tensors {sorted(header)}; expected W_enc, W_dec, b_enc, b_dec and optionally W_skip "
            f"and threshold (or activation_function.threshold) (missing {missing}, unexpected {unknown})"
        )
    for original, (dtype, _) in header.items():
        if dtype not in FLOAT_DTYPES:
            raise InvalidInputError(f"{where}: tensor {original!r} has dtype {dtype}, expected one of {FLOAT_DTYPES}")
    shape = {name: header[original][1] for name, original in stored.items()}
    for bias, axis in (("b_enc", "feature"), ("b_dec", "d_model")):
        if len(shape[bias]) != 1 or shape[bias][0] < 1:
            raise InvalidInputError(f"{where}: {bias} has shape {shape[bias]}, expected ({axis},) with {axis} >= 1")
    n_features, d_model = shape["b_enc"][0], shape["b_dec"][0]
    transposed = set()
    for key in ("W_enc", "W_dec"):
        if shape[key] == (d_model, n_features) and d_model != n_features:
            transposed.add(key)
        elif shape[key] != (n_features, d_model):
            raise InvalidInputError(f"{where}: {key} has shape {shape[key]}, expected ({n_features}, {d_model})")
    for key, want in (("W_skip", (d_model, d_model)), ("threshold", (n_features,))):
        if key in shape and shape[key] != want:
            raise InvalidInputError(f"{where}: {stored[key]} has shape {shape[key]}, expected {want}")
    activation = activation or ("jumprelu" if "threshold" in stored else "relu")
    if (activation == "jumprelu") != ("threshold" in stored):
        has = "has a threshold tensor" if "threshold" in stored else "has no threshold tensor"
        raise InvalidInputError(f"{where}: {has} but the activation is {activation!r}; a threshold goes with jumprelu only")
    try:
        spec = TranscoderSpec(d_model=d_model, n_features=n_features, activation=activation, k=k, skip="W_skip" in stored)
    except ConfigError as err:
        raise InvalidInputError(f"{where} with the scrying block of {path}: {err}") from err
    return LayerFile(layer, file, spec, stored, frozenset(transposed))


def check_finite(tc: Transcoder, where: str, stored: dict[str, str]) -> None:
    """Refuse non-finite weights: NaN anywhere, or inf outside the JumpReLU threshold (an
    infinite threshold is a feature that never fires). ``stored`` maps our tensor names to the
    names in the file, for the message."""
    for name, value in tc.tensors().items():
        bad = value.isnan() if name == "threshold" else ~value.isfinite()
        if bool(bad.any()):
            what = "NaN values" if name == "threshold" else "non-finite values (NaN or inf)"
            raise InvalidInputError(
                f"{where}: tensor {stored.get(name, name)!r} has {int(bad.sum())} {what} in {value.dtype}; expected numbers"
            )


def read_label_file(path: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """A ``labels.json``'s features by ``(layer, index)``, checked (empty when there is none):
    ``{"schema_version": 1, "features": {"LAYER:INDEX": {"label": str, ...}}}``."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except OSError as err:
        raise InvalidInputError(f"{path}: cannot be read ({one_line(err)})") from err
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, deep nesting
        raise InvalidInputError(f"{path}: not JSON ({one_line(err)})") from err
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object with schema_version and features, got {show(data)}")
    version = data.get("schema_version")
    if not _is_int(version) or version not in (1, LABELS_SCHEMA_VERSION):
        raise InvalidInputError(f"{path}: schema_version {show(version)}, expected 1 or {LABELS_SCHEMA_VERSION}")
    features = data.get("features")
    if not isinstance(features, dict):
        raise InvalidInputError(f"{path}: 'features' {show(features)}, expected an object of LAYER:INDEX -> label")
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for key, value in features.items():
        match = _LABEL_KEY.fullmatch(key)
        if match is None:
            raise InvalidInputError(f"{path}: features key {show(key)}, expected LAYER:INDEX (e.g. '3:117')")
        label = value.get("label") if isinstance(value, dict) else None
        if not isinstance(label, str) or not _encodes(label):
            raise InvalidInputError(f"{path}: features[{key!r}] is {show(value)}; expected an object with a text 'label'")
        out[int(match[1]), int(match[2])] = {**value, **_card_fields(path, key, value, version)}
    return out


def _card_fields(path: Path, key: str, value: dict[str, Any], version: int) -> dict[str, Any]:
    """A label's contexts (as :class:`scrying.contexts.Context` JSON; schema 1's ``[activation,
    text]`` pairs become one-token contexts with nothing highlighted, ``at`` -1) and its promoted
    and suppressed tokens, checked."""
    where = f"{path}: features[{key!r}]"
    out: dict[str, Any] = {}
    for name in ("promoted", "suppressed"):
        tokens = value.get(name, [])
        if not isinstance(tokens, list) or not all(isinstance(t, str) and _encodes(t) for t in tokens):
            raise InvalidInputError(f"{where}.{name} is {show(tokens)}; expected a list of token strings")
        out[name] = tokens
    contexts = value.get("contexts", [])
    if not isinstance(contexts, list):
        raise InvalidInputError(f"{where}.contexts is {show(contexts)}; expected a list")
    out["contexts"] = [_context(f"{where}.contexts[{i}]", c, version) for i, c in enumerate(contexts)]
    return out


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _context(where: str, c: object, version: int) -> dict[str, Any]:
    if version == 1:
        if not (isinstance(c, list) and len(c) == 2 and _finite(c[0]) and isinstance(c[1], str) and _encodes(c[1])):
            raise InvalidInputError(f"{where} is {show(c)}; expected [activation, text]")
        return {"activation": c[0], "tokens": [c[1]], "values": [c[0]], "at": -1}
    expected = "expected {activation: number, tokens: [str], values: [number] as many, at: index of a token}"
    if not isinstance(c, dict):
        raise InvalidInputError(f"{where} is {show(c)}; {expected}")
    tokens, values, at = c.get("tokens"), c.get("values"), c.get("at")
    if not (
        _finite(c.get("activation"))
        and isinstance(tokens, list) and all(isinstance(t, str) and _encodes(t) for t in tokens)
        and isinstance(values, list) and len(values) == len(tokens) and all(_finite(v) for v in values)
        and _is_int(at) and 0 <= at < len(tokens)
    ):
        raise InvalidInputError(f"{where} is {show(c)}; {expected}")
    return {"activation": c["activation"], "tokens": tokens, "values": values, "at": at}


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a JSON "\ud800" escape
        return False
    return True
