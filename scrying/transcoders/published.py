"""Published transcoders and SAEs from a local folder: Gemma Scope (npz), Gemma Scope 2 and
SAELens saves (the formats, and what was verified of each, are in
:mod:`scrying.transcoders.published_formats` and :mod:`scrying.transcoders.saelens_format`).

Phases of :func:`inspect_published` (configs and headers only, no weights, so it is the cheap
pre-flight :func:`~scrying.transcoders.files.read_transcoders` runs before it reads a set):

1. **Find** every dictionary under the folder (the folder itself, or any folder below it): a
   ``params.npz`` (Gemma Scope, its layer from a ``layer_<L>`` folder on its path), a
   ``config.json`` + ``params.safetensors`` folder (Gemma Scope 2) or a ``cfg.json`` +
   ``sae_weights.safetensors`` folder (SAELens); symlinks must stay inside the folder.
2. **Check** each one's config and headers (names, dtypes, shapes, orientation).
3. **Assemble** a set: one format, exactly one dictionary per layer ``0..n-1``, one width and
   ``d_model``, the same hooks everywhere.

So a user points ``scrying trace --transcoders`` at e.g. a download of
``google/gemma-scope-2-270m-pt``'s ``transcoder_all/layer_*_width_16k_l0_small_affine`` folders,
or at a folder of SAELens transcoder saves, one per layer. Whether its hooks are ones a
:class:`~scrying.transcoders.files.TranscoderSet` can stand in for (the MLP's input to its output)
is checked by :func:`check_set_hooks`; SAEs load one at a time with :func:`read_published`.
:func:`~scrying.transcoders.hub.download_published` fetches such a folder when asked.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scrying.axes import Float, Tensor
from scrying.errors import InvalidInputError
from scrying.transcoders.file_checks import INPUT_HOOKS, OUTPUT_HOOKS
from scrying.transcoders.published_formats import (
    PublishedUnit,
    inspect_gemma_scope,
    inspect_gemma_scope_2,
    read_unit,
)
from scrying.transcoders.saelens_format import inspect_saelens
from scrying.transcoders.transcoder import Transcoder

#: The files that mark a dictionary's folder, per format.
MARKERS = {"params.npz": (), "params.safetensors": ("config.json",), "sae_weights.safetensors": ("cfg.json",)}
_LAYER_DIR = re.compile(r"layer_(0|[1-9][0-9]{0,4})")


@dataclass(frozen=True)
class PublishedLayout:
    """A checked folder of published dictionaries, one per layer ``0..n-1``."""

    root: Path
    format: str
    model_name: str
    input_hook: str
    output_hook: str
    units: list[PublishedUnit]


@dataclass(frozen=True)
class Published:
    """One published dictionary read into a scrying :class:`Transcoder` (an SAE is a transcoder
    whose input and output hooks are the same), with what its files say it is."""

    transcoder: Transcoder
    unit: PublishedUnit


def is_published(directory: str | Path) -> bool:
    """Whether ``directory`` holds any published dictionary (a cheap look, no checks)."""
    root = Path(directory)
    return root.is_dir() and any(True for _ in _markers(root))


def _markers(root: Path):
    for name, beside in MARKERS.items():
        for file in root.rglob(name):
            if all((file.parent / b).is_file() for b in beside):
                yield file


def _unit(file: Path, root: Path) -> PublishedUnit:
    for each in (file, *(file.parent / b for b in MARKERS[file.name])):
        resolved = each.resolve()
        if not resolved.is_relative_to(root):
            raise InvalidInputError(
                f"{each} resolves to {resolved}, outside {root}; expected the files inside the folder "
                "(a Hugging Face cache snapshot links to ../blobs: download into a folder instead, "
                "e.g. with scrying transcoders download)"
            )
    if file.name == "params.npz":
        layers = [int(m[1]) for part in file.relative_to(root).parts[:-1] if (m := _LAYER_DIR.fullmatch(part))]
        if len(layers) != 1:
            raise InvalidInputError(
                f"{file}: a Gemma Scope params.npz records its layer only in its path; expected one layer_<L> folder "
                f"between {root} and it (as in layer_3/width_16k/average_l0_54/params.npz), found {len(layers)}"
            )
        return inspect_gemma_scope(file, layers[0])
    return (inspect_gemma_scope_2 if file.name == "params.safetensors" else inspect_saelens)(file.parent)


def find_published(directory: str | Path) -> list[PublishedUnit]:
    """Phases 1-2: every dictionary under ``directory``, checked, sorted by layer."""
    root = Path(directory)
    if not root.is_dir():
        raise InvalidInputError(f"no folder at {root} (expected a transcoder or SAE download)")
    root = root.resolve()
    units = [_unit(file, root) for file in sorted(_markers(root))]
    if not units:
        raise InvalidInputError(
            f"{root}: no published dictionary found (expected params.npz, config.json + params.safetensors, "
            "or cfg.json + sae_weights.safetensors in it or below it)"
        )
    return sorted(units, key=lambda u: (u.layer, str(u.path)))


def inspect_published(directory: str | Path) -> PublishedLayout:
    """Phases 1-3; raises ``InvalidInputError`` naming the files on the first problem."""
    units = find_published(directory)
    root = Path(directory).resolve()
    formats = sorted({u.format for u in units})
    if len(formats) > 1:
        raise InvalidInputError(f"{root}: holds dictionaries of several formats {formats}; expected one set")
    by_layer: dict[int, list[PublishedUnit]] = defaultdict(list)
    for unit in units:
        by_layer[unit.layer].append(unit)
    several = {layer: [str(u.path.relative_to(root)) for u in group] for layer, group in by_layer.items() if len(group) > 1}
    if several:
        layer, paths = next(iter(sorted(several.items())))
        raise InvalidInputError(
            f"{root}: layer {layer} has {len(paths)} dictionaries ({', '.join(paths)}); expected one per layer: "
            "point at a folder holding one width and L0 (download only those)"
        )
    if sorted(by_layer) != list(range(len(by_layer))):
        raise InvalidInputError(f"{root}: dictionaries for layers {sorted(by_layer)}; a transcoder set needs one for every layer 0..n-1")
    first = units[0]
    for unit in units[1:]:
        for field in ("input_hook", "output_hook", "kind", "model_name"):
            if getattr(unit, field) != getattr(first, field):
                raise InvalidInputError(
                    f"{root}: layer {unit.layer} ({unit.path.name}) has {field} {getattr(unit, field)!r}, "
                    f"layer 0 {getattr(first, field)!r}; expected one set"
                )
        if (unit.spec.d_model, unit.spec.n_features) != (first.spec.d_model, first.spec.n_features):
            raise InvalidInputError(
                f"{root}: layer {unit.layer} ({unit.path}) is d_model {unit.spec.d_model} x {unit.spec.n_features} features, "
                f"layer 0 {first.spec.d_model} x {first.spec.n_features}; expected one d_model and one width"
            )
    return PublishedLayout(root, first.format, first.model_name, first.input_hook, first.output_hook, units)


def check_set_hooks(layout: PublishedLayout) -> None:
    """Refuse a set whose hooks a transcoder set cannot stand in for (it replaces each MLP: reads
    the MLP's input, writes its output), saying why."""
    where = f"{layout.root} ({layout.format})"
    if layout.units[0].kind == "sae":
        raise InvalidInputError(
            f"{where}: these are SAEs (each reconstructs {layout.input_hook} from itself); feature graphs need "
            "transcoders that read an MLP's input and write its output. Load one with read_published"
        )
    if layout.input_hook == "ln2.hook_normalized":
        raise InvalidInputError(
            f"{where}: these transcoders read the pre-MLP RMSNorm output without its gain (Gemma Scope's README); "
            "scrying reads the MLP's input with it. Fold each layer's gain first: "
            "TranscoderSet([fold_input_gain(t, g) ...], input_hook='mlp.hook_in', ...)"
        )
    if layout.input_hook not in INPUT_HOOKS or layout.output_hook not in OUTPUT_HOOKS:
        raise InvalidInputError(
            f"{where}: read {layout.input_hook!r} and write {layout.output_hook!r}; expected an input in "
            f"{sorted(INPUT_HOOKS)} and an output in {sorted(OUTPUT_HOOKS)}"
        )


def read_published_set(layout: PublishedLayout, dtype: torch.dtype = torch.float32) -> list[Transcoder]:
    """The transcoders of a checked layout, layer by layer."""
    return [read_unit(unit, dtype) for unit in layout.units]


def read_published(path: str | Path, *, dtype: torch.dtype = torch.float32) -> Published:
    """One dictionary: a Gemma Scope ``params.npz`` (its path must name its ``layer_<L>``
    folder), or a Gemma Scope 2 / SAELens folder. SAEs too (``unit.kind == "sae"``)."""
    path = Path(path)
    if path.is_file():
        if path.name != "params.npz":
            raise InvalidInputError(f"{path}: expected a params.npz file or a dictionary's folder")
        layers = [int(m[1]) for part in path.absolute().parts if (m := _LAYER_DIR.fullmatch(part))]
        if len(layers) != 1:
            raise InvalidInputError(f"{path}: expected one layer_<L> folder on a Gemma Scope params.npz's path, found {len(layers)}")
        unit = inspect_gemma_scope(path, layers[-1])
    else:
        units = find_published(path)
        if len(units) != 1:
            raise InvalidInputError(f"{path}: holds {len(units)} dictionaries; expected one (use read_transcoders for a set)")
        unit = units[0]
    return Published(read_unit(unit, dtype), unit)


def fold_input_gain(transcoder: Transcoder, gain: Float[Tensor, " d_model"]) -> Transcoder:
    """A transcoder that reads ``x * gain`` and computes what ``transcoder`` computes on ``x``:
    encoder columns divided by the gain (exact; refused where a gain is 0). The skip, if any,
    is divided the same way. For Gemma Scope (Gemma 2) transcoders, whose input is the pre-MLP
    RMSNorm output without its gain ``1 + weight``: folded, they read scrying's ``mlp.hook_in``."""
    gain = gain.to(transcoder.dtype)
    if gain.shape != (transcoder.spec.d_model,) or not bool((gain != 0).all() & gain.isfinite().all()):
        raise InvalidInputError(f"gain: expected {transcoder.spec.d_model} finite non-zero values, got shape {tuple(gain.shape)}")
    tensors = {name: value.detach().clone() for name, value in transcoder.tensors().items()}
    tensors["W_enc"] = tensors["W_enc"] / gain
    if "W_skip" in tensors:
        tensors["W_skip"] = tensors["W_skip"] / gain
    return Transcoder(replace(transcoder.spec), dtype=transcoder.dtype).load_tensors(tensors)
