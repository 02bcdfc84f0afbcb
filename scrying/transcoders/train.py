"""Train one transcoder per layer, offline, streaming activations (never all on disk).

Phases of :func:`train_transcoders`:

1. **Windows** — the corpus is tokenized into windows of ``seq_len`` tokens (BOS first), in a
   fixed order (:func:`token_windows`); the first ``eval_tokens`` are held out for the report.
2. **Harvest** — for each chunk of ``chunk_tokens`` tokens, one forward pass per batch of
   windows records every layer's MLP input and output (``mlp.hook_in`` / ``mlp.hook_out``); the
   pass stops after the last block (no unembedding). Position 0 (BOS) is dropped, as
   circuit-tracer zeroes transcoder features there.
3. **Normalise** — on the first chunk, one scale per layer for inputs and outputs (root mean
   square norm / sqrt(d_model)); training sees unit-scale activations, and the scales are folded
   into the weights when the transcoders are written.
4. **Train** — every layer's transcoder on the same shuffled chunk (seeded by chunk), one Adam
   step for all layers per batch: normalised MSE, plus for ReLU an L1 penalty on activations x
   decoder norms (Anthropic's "Towards Monosemanticity" update); TopK needs no penalty
   (Gao et al. 2024).
5. **Checkpoint** — after each chunk, weights, Adam state and progress (safetensors + JSON,
   written then renamed): a killed run resumes at the next chunk and ends with the same weights
   as an uninterrupted one (same seed and settings; other settings are refused).
6. **Write and report** — ``config.yaml`` + ``layer_<i>.safetensors`` (circuit-tracer's layout,
   :mod:`scrying.transcoders.files`) and the per-layer quality report on the held-out windows
   (:mod:`scrying.transcoders.quality`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from scrying.axes import Int, Model, Tensor
from scrying.errors import ConfigError, InvalidInputError
from scrying.models.adapter import final_resid
from scrying.prompts import prepends_bos
from scrying.sites import Component, Site, recorded
from scrying.transcoders.files import TranscoderSet, write_transcoders
from scrying.transcoders.quality import quality_report
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TranscoderTrainConfig:
    """How to train a transcoder set (see :data:`PRESETS`)."""

    n_features: int = 4096
    activation: Literal["relu", "topk"] = "topk"
    k: int | None = 32
    skip: bool = True
    l1: float = 0.0  # relu only: weight of the activation x decoder-norm penalty
    lr: float = 1e-3
    batch_size: int = 1024  # activation rows per Adam step
    seq_len: int = 128
    chunk_tokens: int = 32_768  # harvested per chunk (all layers kept in memory)
    total_tokens: int = 1_000_000
    eval_tokens: int = 8_192
    harvest_batch: int = 16  # windows per forward pass
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "topk"):
            raise ConfigError(f"TranscoderTrainConfig.activation must be 'relu' or 'topk' (JumpReLU sets are read, not trained), got {self.activation!r}")
        if (self.activation == "topk") != (self.k is not None):
            raise ConfigError(f"TranscoderTrainConfig.k is required for 'topk' and only for it, got k={self.k}")
        for name in ("n_features", "batch_size", "chunk_tokens", "total_tokens", "eval_tokens", "harvest_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TranscoderTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ConfigError(f"TranscoderTrainConfig.seq_len must be >= 2, got {self.seq_len}")
        if self.chunk_tokens < self.seq_len:
            raise ConfigError(f"TranscoderTrainConfig.chunk_tokens ({self.chunk_tokens}) must hold one window of seq_len {self.seq_len}")
        if self.lr <= 0 or self.l1 < 0:
            raise ConfigError(f"TranscoderTrainConfig.lr must be > 0 and l1 >= 0, got {self.lr}, {self.l1}")

    @property
    def windows_per_chunk(self) -> int:
        return self.chunk_tokens // self.seq_len

    @property
    def n_chunks(self) -> int:
        return max(1, self.total_tokens // (self.windows_per_chunk * self.seq_len))

    @property
    def n_eval_windows(self) -> int:
        return max(1, self.eval_tokens // self.seq_len)


#: Gemma 3 270M (18 layers, d_model 640), float32. Activations held per chunk: tokens x 18 x 2 x
#: 640 x 4 bytes (quick 1.5 GB, default 3 GB, large 12 GB).
#: ``quick``: a smoke-level set, 4 chunks (measured 12 min a chunk on this 2-core machine under a
#: load average of 7; ~3 min a chunk idle); ``default``: 9 chunks of 32,768 tokens (295k tokens,
#: 4,096 TopK-32 features per layer): on the idle machine a chunk takes ~3 min (harvest 882
#: tok/s, 137 s of Adam steps: measured on the first chunk), ~27 min in all; ``large``: ~10M
#: tokens and 16k features, for a machine with a GPU and >= 32 GB of memory.
PRESETS: dict[str, TranscoderTrainConfig] = {
    "quick": TranscoderTrainConfig(n_features=2048, k=32, total_tokens=65_536, chunk_tokens=16_384, seq_len=64, eval_tokens=4_096),
    "default": TranscoderTrainConfig(n_features=4096, k=32, total_tokens=294_912, chunk_tokens=32_768, seq_len=128),
    "large": TranscoderTrainConfig(n_features=16_384, k=64, total_tokens=10_000_000, chunk_tokens=131_072, seq_len=256, batch_size=4096),
}


@dataclass(frozen=True)
class TrainResult:
    transcoders: TranscoderSet
    report: pd.DataFrame  # per layer: fvu, l0, dead_fraction
    chunks_trained: int  # in this call (a resumed run counts only its own)
    directory: Path
    history: list[dict] = field(default_factory=list)  # per chunk: mean normalised MSE per layer


def token_windows(model: Model, texts: Iterable[str], seq_len: int) -> Iterator[Int[Tensor, " seq"]]:
    """Windows of ``seq_len`` tokens of the concatenated texts (each text followed by EOS where
    the tokenizer has one), in order: BOS first where the model's own setting prepends one
    (:func:`scrying.prompts.prepends_bos`; EOS stands in for a missing BOS token), else text
    from the first position, as the model reads its prompts."""
    tok = model.tokenizer
    start: list[int] = []
    if prepends_bos(model):
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if bos is None:
            raise InvalidInputError("the tokenizer has neither a BOS nor an EOS token to start windows with")
        start = [bos]
    eos = tok.eos_token_id
    n_text = seq_len - len(start)
    buffer: list[int] = []
    for text in texts:
        buffer += tok(text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        while len(buffer) >= n_text:
            yield torch.tensor(start + buffer[:n_text], dtype=torch.long)
            buffer = buffer[n_text:]


def harvest(model: Model, windows: Int[Tensor, "batch seq"]) -> tuple[Tensor, Tensor]:
    """MLP inputs and outputs of every layer, ``[layer rows d_model]`` each (position 0 dropped:
    BOS, or a first token read without context; an attention sink either way)."""
    n = model.cfg.n_layers
    sites = [Site(Component.MLP_IN, ly) for ly in range(n)] + [Site(Component.MLP_RESULT, ly) for ly in range(n)]
    with torch.no_grad(), recorded(model, sites) as store:
        final_resid(model, windows)
    x = torch.stack([store[Site(Component.MLP_IN, ly)][:, 1:].flatten(0, 1) for ly in range(n)])
    y = torch.stack([store[Site(Component.MLP_RESULT, ly)][:, 1:].flatten(0, 1) for ly in range(n)])
    return x, y


def _harvest_chunk(model: Model, windows: list[Tensor], config: TranscoderTrainConfig, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    xs, ys = [], []
    for start in range(0, len(windows), config.harvest_batch):
        x, y = harvest(model, torch.stack(windows[start : start + config.harvest_batch]))
        xs.append(x.to(dtype))
        ys.append(y.to(dtype))
    return torch.cat(xs, dim=1), torch.cat(ys, dim=1)


def _init(spec: TranscoderSpec, seed: int, dtype: torch.dtype, y_mean: Tensor) -> Transcoder:
    gen = torch.Generator().manual_seed(seed)
    tc = Transcoder(spec, dtype=dtype)
    w = torch.randn(spec.n_features, spec.d_model, generator=gen, dtype=dtype)
    w = w / w.norm(dim=1, keepdim=True)
    with torch.no_grad():
        tc.W_dec.copy_(0.1 * w)
        tc.W_enc.copy_(w)
        tc.b_dec.copy_(y_mean)
    return tc


def _fold(tc: Transcoder, s_in: float, s_out: float) -> Transcoder:
    """Weights for raw activations from weights trained on ``x / s_in`` -> ``y / s_out``."""
    out = Transcoder(tc.spec, dtype=tc.W_enc.dtype)
    t = {k: v.detach().clone() for k, v in tc.tensors().items()}
    t["W_enc"] = t["W_enc"] / s_in
    t["W_dec"] = t["W_dec"] * s_out
    t["b_dec"] = t["b_dec"] * s_out
    if "W_skip" in t:
        t["W_skip"] = t["W_skip"] * (s_out / s_in)
    return out.load_tensors(t)


@dataclass
class _Progress:
    """What a run carries from chunk to chunk, and what a checkpoint restores."""

    done: int = 0
    history: list[dict] = field(default_factory=list)
    scales: list[tuple[float, float]] = field(default_factory=list)
    transcoders: list[Transcoder] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None


def train_transcoders(
    model: Model,
    texts: Callable[[], Iterable[str]],
    out_dir: str | Path,
    config: TranscoderTrainConfig | None = None,
    *,
    model_name: str = "",
    progress: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train, checkpointing after every chunk into ``out_dir/checkpoint``; a rerun resumes.

    ``texts`` returns a fresh iterable of the corpus's documents each time it is called (a
    resumed run reads the stream again up to where it stopped). ``on_chunk(i)`` is called after
    chunk ``i`` is checkpointed (tests interrupt there). Phases: see the module docstring.
    """
    config = config or TranscoderTrainConfig()
    out = Path(out_dir)
    dtype = getattr(torch, config.dtype)
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    spec = TranscoderSpec(d_model=d_model, n_features=config.n_features, activation=config.activation, k=config.k, skip=config.skip)
    settings = {"config": asdict(config), "model_name": model_name, "n_layers": n_layers, "d_model": d_model}
    stream = token_windows(model, texts(), config.seq_len)
    eval_windows = _held_out(stream, config)
    state = _resume(out / "checkpoint", settings, spec, dtype, n_layers, config)
    trained = 0
    bar = tqdm(total=config.n_chunks, initial=state.done, desc="transcoders", disable=not progress)
    for chunk in range(config.n_chunks):
        windows = [w for _, w in zip(range(config.windows_per_chunk), stream, strict=False)]
        if len(windows) < config.windows_per_chunk:
            raise InvalidInputError(f"the corpus ran out at chunk {chunk} of {config.n_chunks} ({config.total_tokens} tokens asked); give more text or fewer tokens")
        if chunk < state.done:
            continue
        _train_on(model, windows, state, spec, config, dtype, chunk)
        _save_checkpoint(out / "checkpoint", settings, state.transcoders, state.optimizer, state.scales, chunk + 1, state.history)
        trained += 1
        bar.update(1)
        if on_chunk is not None:
            on_chunk(chunk)
    bar.close()
    return _write_and_report(model, state, eval_windows, out, model_name, config, trained)


def _held_out(stream: Iterator[Tensor], config: TranscoderTrainConfig) -> list[Tensor]:
    """Phase 1: the first windows of the stream, kept for the report."""
    eval_windows = [w for _, w in zip(range(config.n_eval_windows), stream, strict=False)]
    if len(eval_windows) < config.n_eval_windows:
        raise InvalidInputError(f"the corpus holds {len(eval_windows)} windows of {config.seq_len} tokens, fewer than the {config.n_eval_windows} held out for evaluation")
    return eval_windows


def _resume(ckpt: Path, settings: dict, spec: TranscoderSpec, dtype: torch.dtype, n_layers: int, config: TranscoderTrainConfig) -> _Progress:
    """Phase 5, read back: the checkpoint's progress, or a fresh start."""
    saved = _load_checkpoint(ckpt, settings)
    if not saved:
        return _Progress()
    tensors = load_file(str(ckpt / "state.safetensors"))
    transcoders = [Transcoder(spec, dtype=dtype).load_tensors(_prefixed(tensors, f"L{ly}.")) for ly in range(n_layers)]
    optimizer = _optimizer(transcoders, config)
    optimizer.load_state_dict(_optimizer_state(optimizer, tensors))
    logger.warning("Resuming: %d of %d chunks already done (%s)", saved["chunks_done"], config.n_chunks, ckpt.parent)
    return _Progress(saved["chunks_done"], saved["history"], [tuple(s) for s in saved["scales"]], transcoders, optimizer)


def _train_on(
    model: Model, windows: list[Tensor], state: _Progress, spec: TranscoderSpec, config: TranscoderTrainConfig, dtype: torch.dtype, chunk: int
) -> None:
    """Phases 2-4 for one chunk: harvest, normalise (scales fixed by the first chunk), train."""
    started = time.perf_counter()
    x, y = _harvest_chunk(model, windows, config, dtype)
    harvested = time.perf_counter()
    n_layers = x.shape[0]
    if not state.scales:
        state.scales = [(_rms(x[ly]), _rms(y[ly])) for ly in range(n_layers)]
    s_in = torch.tensor([s[0] for s in state.scales], dtype=dtype)[:, None, None]
    s_out = torch.tensor([s[1] for s in state.scales], dtype=dtype)[:, None, None]
    x, y = x / s_in, y / s_out
    if not state.transcoders:
        state.transcoders = [_init(spec, config.seed * 1000 + ly, dtype, y[ly].mean(0)) for ly in range(n_layers)]
        state.optimizer = _optimizer(state.transcoders, config)
    assert state.optimizer is not None  # set together with the transcoders
    losses = _train_chunk(state.transcoders, state.optimizer, x, y, config, chunk)
    logger.info(
        "chunk %d/%d: harvest %.0f tok/s, training %.1f s, mean normalised MSE %.3f",
        chunk + 1, config.n_chunks, x.shape[1] / (harvested - started), time.perf_counter() - harvested, sum(losses) / len(losses),
    )
    state.history.append({"chunk": chunk, "mse": losses})


def _write_and_report(
    model: Model, state: _Progress, eval_windows: list[Tensor], out: Path, model_name: str, config: TranscoderTrainConfig, trained: int
) -> TrainResult:
    """Phase 6: fold the scales into the weights, write the set and its quality report."""
    tset = TranscoderSet([_fold(tc, *state.scales[ly]) for ly, tc in enumerate(state.transcoders)], model_name)
    write_transcoders(tset, out)
    report = quality_report(model, tset, torch.stack(eval_windows), batch=config.harvest_batch)
    report.to_csv(out / "report.csv", index=False)
    return TrainResult(tset, report, trained, out, state.history)


def _rms(t: Tensor) -> float:
    return float(t.pow(2).sum(-1).mean().sqrt() / t.shape[-1] ** 0.5)


def _optimizer(transcoders: list[Transcoder], config: TranscoderTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for tc in transcoders for p in tc.parameters()], lr=config.lr)


def _train_chunk(
    transcoders: list[Transcoder], optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, config: TranscoderTrainConfig, chunk: int
) -> list[float]:
    rows = x.shape[1]
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + chunk))
    totals = [0.0] * len(transcoders)
    steps = 0
    for start in range(0, rows, config.batch_size):
        idx = order[start : start + config.batch_size]
        loss = torch.zeros((), dtype=x.dtype)
        for ly, tc in enumerate(transcoders):
            xb, yb = x[ly, idx], y[ly, idx]
            feats = tc.encode(xb)
            mse = (tc.decode(feats, xb) - yb).pow(2).sum(-1).mean()
            totals[ly] += mse.item()
            loss = loss + mse
            if config.l1 > 0:
                loss = loss + config.l1 * (feats * tc.W_dec.norm(dim=1)).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return [t / steps for t in totals]


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> dict:
    blank = optimizer.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": blank["param_groups"]}


def _save_checkpoint(
    ckpt: Path, settings: dict, transcoders: list[Transcoder], optimizer: torch.optim.Optimizer,
    scales: list[tuple[float, float]], chunks_done: int, history: list[dict],
) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    tensors = {f"L{ly}.{k}": v.detach().clone() for ly, tc in enumerate(transcoders) for k, v in tc.tensors().items()}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).clone()
    save_file(tensors, str(ckpt / "state.safetensors.tmp"))
    os.replace(ckpt / "state.safetensors.tmp", ckpt / "state.safetensors")
    meta = {**settings, "chunks_done": chunks_done, "scales": scales, "history": history}
    (ckpt / "state.json.tmp").write_text(json.dumps(meta))
    os.replace(ckpt / "state.json.tmp", ckpt / "state.json")


def _load_checkpoint(ckpt: Path, settings: dict) -> dict | None:
    meta_path = ckpt / "state.json"
    if not meta_path.is_file() or not (ckpt / "state.safetensors").is_file():
        return None
    meta = json.loads(meta_path.read_text())
    stored = {k: meta.get(k) for k in settings}
    if json.loads(json.dumps(settings)) != stored:
        raise InvalidInputError(f"{ckpt} holds a run with other settings ({stored}); use another directory or delete it")
    return meta
