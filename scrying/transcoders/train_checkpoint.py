"""The atomic training checkpoint: weights, optimiser state and progress in one file.

``checkpoint/state.safetensors`` holds every layer's weights (``L<i>.<name>``), the Adam state
(``opt.<param>.<name>``), the dead-feature counters (``since_fired``) and, in the file's
metadata, the progress as JSON (settings, chunks done, scales, history). It is written to
``state.safetensors.tmp`` in the same directory and moved over the old file with ``os.replace``
(atomic on POSIX), so a run killed at any moment leaves either the previous checkpoint or the new
one, never weights from one chunk with progress from another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from scrying.axes import Tensor
from scrying.errors import InvalidInputError

FILE = "state.safetensors"


def save_checkpoint(ckpt: Path, tensors: dict[str, Tensor], progress: dict) -> None:
    """Write tensors and progress together, atomically (see the module docstring)."""
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / (FILE + ".tmp")
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp), metadata={"progress": json.dumps(progress)})
    os.replace(tmp, ckpt / FILE)


def load_checkpoint(
    ckpt: Path, settings: dict, *, config_defaults: dict | None = None, free: tuple[str, ...] = ()
) -> tuple[dict[str, Tensor], dict] | None:
    """``(tensors, progress)`` of the checkpoint in ``ckpt``, or None when there is none; a
    checkpoint of a run with other ``settings`` is refused (naming both). A key of
    ``settings["config"]`` that the stored config lacks (an option added since the run started)
    matches when its value is its default in ``config_defaults``: the run used that default. Keys
    of the config in ``free`` are not compared (the caller checks them against the progress)."""
    if not (ckpt / FILE).is_file():
        return None
    tensors, progress = read_checkpoint(ckpt)
    stored = json.loads(json.dumps({k: progress.get(k) for k in settings}))  # a copy: free keys are dropped from it
    expected = json.loads(json.dumps(settings))
    old, new = stored.get("config"), expected.get("config")
    if config_defaults is not None and isinstance(old, dict) and isinstance(new, dict):
        defaults = json.loads(json.dumps(config_defaults))
        for key in [k for k in new if k not in old and k in defaults and new[k] == defaults[k]]:
            del new[key]
    for config in (old, new):
        if isinstance(config, dict):
            for key in free:
                config.pop(key, None)
    if expected != stored:
        raise InvalidInputError(f"{ckpt} holds a run with other settings ({stored}); expected {settings}: use another directory or delete it")
    return tensors, progress


def read_checkpoint(ckpt: Path, *, prefix: str = "") -> tuple[dict[str, Tensor], dict]:
    """``(tensors whose names start with prefix, progress)`` of the checkpoint in ``ckpt``, whatever
    run wrote it (an error naming the file when there is none)."""
    path = ckpt / FILE
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist: expected a training checkpoint (OUT/checkpoint/{FILE} of `scrying transcoders train`)")
    with safe_open(str(path), framework="pt") as handle:
        progress = json.loads((handle.metadata() or {}).get("progress", "{}"))
        tensors = {k: handle.get_tensor(k) for k in handle.keys() if k.startswith(prefix)}  # noqa: SIM118 (safe_open has no __iter__)
    return tensors, progress


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The Adam state as flat named tensors (``opt.<param index>.<name>``)."""
    out = {}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            out[f"opt.{index}.{name}"] = torch.as_tensor(value)
    return out


def optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> dict:
    """The state dict that :func:`optimizer_tensors` flattened (the param groups: the fresh
    optimiser's; a schedule sets their learning rate before every step)."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}
