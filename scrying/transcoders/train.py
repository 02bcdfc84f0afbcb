"""Train one transcoder per layer, offline, streaming activations (never all on disk).

Phases of :func:`train_transcoders`:

1. **Windows** — the corpus is tokenized into windows of ``seq_len`` tokens (BOS first), in a
   fixed order (:func:`token_windows`); ``eval_tokens`` are held out for the report: windows of
   the separate held-out text when one is given (the mixed corpus's ``heldout.txt``), else the
   first windows of the stream.
2. **Harvest** — for each chunk of ``chunk_tokens`` tokens, one forward pass per batch of
   windows records every layer's MLP input and output (``mlp.hook_in`` / ``mlp.hook_out``); the
   pass stops after the last block (no unembedding). Position 0 (BOS) is dropped, as
   circuit-tracer zeroes transcoder features there. With ``bf16`` the pass runs under CPU
   autocast and the chunk is kept in bfloat16 (half the memory).
3. **Normalise** — on the first chunk, one scale per layer for inputs and outputs (root mean
   square norm / sqrt(d_model)); training sees unit-scale activations, and the scales are folded
   into the weights when the transcoders are written.
4. **Train** — ``epochs`` passes over the chunk held in memory, each in its own seeded order;
   one Adam step for all layers per batch, the learning rate from the schedule
   (:func:`scrying.transcoders.train_loss.lr_at`: warmup, then cosine decay over the whole run);
   the loss per layer is :func:`scrying.transcoders.train_loss.layer_loss` (normalised MSE,
   AuxK on the features dead for ``dead_after`` rows, L1 for ReLU). TopK decodes sparsely
   (``embedding_bag`` over the ``k`` active rows), which equals the dense product. Master
   weights and Adam stay float32; ``bf16`` runs the products under autocast.
   In the ``revive_chunks`` that follow the schedule's ``n_chunks`` (at its final learning
   rate), each layer's features active on none of the chunk's rows (``revive_rare``: on fewer
   than ``revive_rate`` of them) are first revived by their encoder bias
   (:mod:`scrying.transcoders.revive`).
5. **Checkpoint** — after each chunk, weights, Adam state, dead-feature counters and progress in
   one file written atomically (:mod:`scrying.transcoders.train_checkpoint`): a killed run
   resumes at the next chunk and ends with the same weights as an uninterrupted one (same seed
   and settings; other settings are refused).
6. **Write and report** — ``config.yaml`` + ``layer_<i>.safetensors`` (circuit-tracer's layout,
   :mod:`scrying.transcoders.files`) and the per-layer quality report on the held-out windows
   (:mod:`scrying.transcoders.quality`: FVU, L0, dead and rare features, spliced-in loss and KL).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from scrying.axes import Int, Model, Tensor
from scrying.errors import ConfigError, InvalidInputError
from scrying.models.adapter import final_resid
from scrying.prompts import prepends_bos
from scrying.sites import Component, Site, recorded
from scrying.transcoders.files import TranscoderSet, write_transcoders
from scrying.transcoders.quality import quality_report
from scrying.transcoders.revive import revive_dead
from scrying.transcoders.train_checkpoint import (
    load_checkpoint,
    optimizer_state,
    optimizer_tensors,
    read_checkpoint,
    save_checkpoint,
)
from scrying.transcoders.train_config import TranscoderTrainConfig
from scrying.transcoders.train_loss import dead_mask, layer_loss, lr_at
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    transcoders: TranscoderSet
    report: pd.DataFrame  # per layer: see scrying.transcoders.quality
    chunks_trained: int  # in this call (a resumed run counts only its own)
    directory: Path
    history: list[dict] = field(default_factory=list)  # per chunk: mean normalised MSE (and AuxK) per layer, timings


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



def first_windows(model: Model, texts: Iterable[str], seq_len: int, n: int, *, what: str) -> Int[Tensor, "window seq"]:
    """The first ``n`` windows of :func:`token_windows` as one tensor; ``what`` (the text's
    name) starts the error when the text holds not even one window."""
    windows = [w for _, w in zip(range(n), token_windows(model, texts, seq_len), strict=False)]
    if not windows:
        raise InvalidInputError(f"{what}: fewer than {seq_len} tokens of text")
    return torch.stack(windows)

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


def _autocast(config: TranscoderTrainConfig):
    return torch.autocast("cpu", dtype=torch.bfloat16) if config.bf16 else nullcontext()


def _harvest_chunk(model: Model, windows: list[Tensor], config: TranscoderTrainConfig, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    store = torch.bfloat16 if config.bf16 else dtype
    xs, ys = [], []
    for start in range(0, len(windows), config.harvest_batch):
        with _autocast(config):
            x, y = harvest(model, torch.stack(windows[start : start + config.harvest_batch]))
        xs.append(x.to(store))
        ys.append(y.to(store))
    return torch.cat(xs, dim=1), torch.cat(ys, dim=1)


def _init(
    spec: TranscoderSpec, seed: int, dtype: torch.dtype, y_mean: Tensor, x_mean: Tensor | None = None, x_rows: Tensor | None = None,
    y_rows: Tensor | None = None, data_share: float = 1.0,
) -> Transcoder:
    """Unit-norm encoder rows (random, or with ``x_rows`` the directions of seeded draws of those
    inputs minus their mean: ``encoder_init="data"``; with ``data_share`` below 1 only that share
    of the rows, the rest random: ``benchmarks/transcoder_init.py``'s half-and-half variant, no
    config option, since it left more features dead), the decoder their transpose times 0.1, ``b_dec`` the
    mean output; with ``x_mean`` (``centre_encoder``), ``b_enc = -W_enc x_mean`` so that every
    feature starts centred on the inputs (see :class:`TranscoderTrainConfig`)."""
    gen = torch.Generator().manual_seed(seed)
    tc = Transcoder(spec, dtype=dtype)
    if x_rows is None:
        w = torch.randn(spec.n_features, spec.d_model, generator=gen, dtype=dtype)
    else:
        n_data = round(data_share * spec.n_features)
        picked = x_rows[torch.randint(0, x_rows.shape[0], (n_data,), generator=gen)].to(dtype)
        w = torch.cat([picked - x_rows.mean(0).to(dtype),
                       torch.randn(spec.n_features - n_data, spec.d_model, generator=gen, dtype=dtype)])
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    with torch.no_grad():
        tc.W_dec.copy_(0.1 * w)
        tc.W_enc.copy_(w)
        tc.b_dec.copy_(y_mean.to(dtype))
        if x_mean is not None:
            tc.b_enc.copy_(-(w @ x_mean.to(dtype)))
        if y_rows is not None:  # match_decoder: the first reconstruction as large as the outputs' spread
            sample = x_rows[:_MATCH_ROWS].to(dtype) if x_rows is not None else None
            if sample is None:
                raise ConfigError("match_decoder needs the inputs (x_rows) to encode")
            made = (tc.encode(sample) @ tc.W_dec).norm(dim=-1).mean()
            wanted = (y_rows[:_MATCH_ROWS].to(dtype) - y_mean.to(dtype)).norm(dim=-1).mean()
            if made > 0:
                tc.W_dec.mul_(wanted / made)
    return tc


def _initial(spec: TranscoderSpec, config: TranscoderTrainConfig, x: Tensor, y: Tensor, dtype: torch.dtype) -> list[Transcoder]:
    """Each layer's starting transcoder from the first chunk's normalised ``x``, ``y`` (``[layer rows d_model]``)."""
    out = []
    for ly in range(x.shape[0]):
        data = _data_rows(config, ly)
        out.append(_init(spec, config.seed * 1000 + ly, dtype, y[ly].float().mean(0), x[ly].float().mean(0) if config.centre_encoder else None,
                         x[ly].float() if data else None, y[ly].float() if config.match_decoder and data else None))
    return out


def _data_rows(config: TranscoderTrainConfig, layer: int) -> bool:
    """Whether ``layer`` starts from encoder rows drawn from its inputs (``encoder_init="data"``,
    except the ``random_init_layers``)."""
    return config.encoder_init == "data" and layer not in config.random_init_layers


_MATCH_ROWS = 4096  # rows of the first chunk that set the decoder's starting scale (match_decoder)


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
    since_fired: Tensor | None = None  # [layer feature] rows since each feature last fired


def train_transcoders(
    model: Model,
    texts: Callable[[], Iterable[str]],
    out_dir: str | Path,
    config: TranscoderTrainConfig | None = None,
    *,
    eval_texts: Callable[[], Iterable[str]] | None = None,
    model_name: str = "",
    progress: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train, checkpointing after every chunk into ``out_dir/checkpoint``; a rerun resumes.

    ``texts`` returns a fresh iterable of the corpus's documents each time it is called (a
    resumed run reads the stream again up to where it stopped); ``eval_texts`` the held-out text
    the report reads (``None``: the first windows of ``texts`` are held out). ``on_chunk(i)`` is
    called after chunk ``i`` is checkpointed (tests interrupt there). Phases: see the module
    docstring.
    """
    config = config or TranscoderTrainConfig()
    out = Path(out_dir)
    dtype = getattr(torch, config.dtype)
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    spec = TranscoderSpec(d_model=d_model, n_features=config.n_features, activation=config.activation, k=config.k, skip=config.skip)
    settings = {"config": asdict(config), "model_name": model_name, "n_layers": n_layers, "d_model": d_model,
                "separate_heldout": eval_texts is not None}
    stream = token_windows(model, texts(), config.seq_len)
    eval_windows = _held_out(stream if eval_texts is None else token_windows(model, eval_texts(), config.seq_len), config)
    state = _resume(out / "checkpoint", settings, spec, dtype, n_layers, config)
    trained = 0
    bar = tqdm(total=config.all_steps, initial=state.done * config.steps_per_chunk, desc="transcoders", unit="step",
               disable=not progress)
    for chunk in range(config.all_chunks):
        windows = [w for _, w in zip(range(config.windows_per_chunk), stream, strict=False)]
        if len(windows) < config.windows_per_chunk:
            raise InvalidInputError(f"the corpus ran out at chunk {chunk} of {config.all_chunks} ({config.total_tokens} tokens asked"
                                    f"{f', then {config.revive_chunks} revival chunks' if config.revive_chunks else ''}); give more text or fewer tokens")
        if chunk < state.done:
            continue
        _train_on(model, windows, state, spec, config, dtype, chunk, bar)
        state.done = chunk + 1
        _save(out / "checkpoint", settings, state)
        trained += 1
        if on_chunk is not None:
            on_chunk(chunk)
    bar.close()
    return _write_and_report(model, state, eval_windows, out, model_name, config, trained)


def _held_out(stream: Iterator[Tensor], config: TranscoderTrainConfig) -> list[Tensor]:
    """Phase 1: the first ``n_eval_windows`` windows of the stream, kept for the report."""
    eval_windows = [w for _, w in zip(range(config.n_eval_windows), stream, strict=False)]
    if len(eval_windows) < config.n_eval_windows:
        raise InvalidInputError(f"the held-out text holds {len(eval_windows)} windows of {config.seq_len} tokens, fewer than the {config.n_eval_windows} asked for evaluation (eval_tokens)")
    return eval_windows


def _save(ckpt: Path, settings: dict, state: _Progress) -> None:
    """Phase 5: one atomic file (see :mod:`scrying.transcoders.train_checkpoint`)."""
    assert state.optimizer is not None and state.since_fired is not None  # set with the transcoders
    tensors = {f"L{ly}.{k}": v for ly, tc in enumerate(state.transcoders) for k, v in tc.tensors().items()}
    tensors |= optimizer_tensors(state.optimizer)
    tensors["since_fired"] = state.since_fired
    save_checkpoint(ckpt, tensors, {**settings, "chunks_done": state.done, "scales": state.scales, "history": state.history})


def _resume(ckpt: Path, settings: dict, spec: TranscoderSpec, dtype: torch.dtype, n_layers: int, config: TranscoderTrainConfig) -> _Progress:
    """Phase 5, read back: the checkpoint's progress, or a fresh start."""
    saved = load_checkpoint(ckpt, settings, config_defaults=asdict(TranscoderTrainConfig()), free=_REVIVE_KEYS)
    if saved is None:
        return _Progress()
    tensors, meta = saved
    if meta["chunks_done"] > config.n_chunks:  # revival begun: its settings must be the checkpoint's
        stored = {k: meta["config"].get(k, getattr(TranscoderTrainConfig(), k)) for k in _REVIVE_KEYS}
        wanted = {k: getattr(config, k) for k in _REVIVE_KEYS}
        if stored != wanted:
            raise InvalidInputError(f"{ckpt} holds a run {meta['chunks_done'] - config.n_chunks} chunks into its revival with {stored}; "
                                    f"expected {wanted}: use another directory or delete it")
    transcoders = _layers(tensors, spec, dtype, n_layers)
    optimizer = _optimizer(transcoders, config)
    optimizer.load_state_dict(optimizer_state(optimizer, tensors))
    logger.warning("Resuming: %d of %d chunks already done (%s)", meta["chunks_done"], config.all_chunks, ckpt.parent)
    return _Progress(meta["chunks_done"], meta["history"], [tuple(s) for s in meta["scales"]], transcoders, optimizer, tensors["since_fired"])


_REVIVE_KEYS = ("revive_chunks", "revive_rate", "revive_rare")  # free to change until the revival chunks begin (see _resume)


def _train_on(
    model: Model, windows: list[Tensor], state: _Progress, spec: TranscoderSpec, config: TranscoderTrainConfig, dtype: torch.dtype,
    chunk: int, bar: tqdm,
) -> None:
    """Phases 2-4 for one chunk: harvest, normalise (scales fixed by the first chunk), train."""
    started, cpu_started = time.perf_counter(), time.process_time()
    x, y = _harvest_chunk(model, windows, config, dtype)
    harvested, cpu_harvested = time.perf_counter(), time.process_time()
    n_layers = x.shape[0]
    if not state.scales:
        state.scales = [(_rms(x[ly].float()), _rms(y[ly].float())) for ly in range(n_layers)]
    s_in = torch.tensor([s[0] for s in state.scales], dtype=x.dtype)[:, None, None]
    s_out = torch.tensor([s[1] for s in state.scales], dtype=x.dtype)[:, None, None]
    x, y = x / s_in, y / s_out
    if not state.transcoders:
        state.transcoders = _initial(spec, config, x, y, dtype)
        state.optimizer = _optimizer(state.transcoders, config)
        state.since_fired = torch.zeros(n_layers, spec.n_features, dtype=torch.long)
    revived = _revive(state, x, config) if chunk >= config.n_chunks else None
    mse, aux = _train_chunk(state, x, y, config, chunk, bar)
    seconds = time.perf_counter() - harvested
    logger.info(
        "chunk %d/%d: harvest %.0f tok/s, training %.1f s (%.2f s/step), mean normalised MSE %.3f",
        chunk + 1, config.all_chunks, x.shape[1] / (harvested - started), seconds, seconds / config.steps_per_chunk, sum(mse) / len(mse),
    )
    state.history.append({"chunk": chunk, "mse": mse, "aux": aux, "harvest_s": harvested - started, "train_s": seconds,
                          "harvest_cpu_s": cpu_harvested - cpu_started, "train_cpu_s": time.process_time() - cpu_harvested,
                          "dead_fraction": dead_mask(state.since_fired, config.dead_after).double().mean(-1).tolist()}
                         | ({"revived": revived} if revived is not None else {}))


def _revive(state: _Progress, x: Tensor, config: TranscoderTrainConfig) -> list[int]:
    """A revival chunk's start: per layer, the features active on none of the chunk's rows
    (``revive_rare``: on fewer than ``revive_rate`` of them) revived (:func:`scrying.transcoders.revive.revive_dead`), their dead-row counters reset."""
    assert state.since_fired is not None  # set with the transcoders
    revived = []
    for ly, tc in enumerate(state.transcoders):
        dead = revive_dead(tc, x[ly].to(tc.dtype), config.revive_rate, rare=config.revive_rare)
        state.since_fired[ly, dead] = 0
        revived.append(int(dead.sum()))
    logger.info("revived %d features (%s per layer)", sum(revived), revived)
    return revived


def _write_and_report(
    model: Model, state: _Progress, eval_windows: list[Tensor], out: Path, model_name: str, config: TranscoderTrainConfig, trained: int
) -> TrainResult:
    """Phase 6: fold the scales into the weights, write the set and its quality report."""
    tset = _folded_set(state.transcoders, state.scales, model_name)
    write_transcoders(tset, out)
    windows = torch.stack(eval_windows)
    n_splice = min(len(eval_windows), config.splice_tokens // config.seq_len) if config.splice_tokens else 0
    report = quality_report(model, tset, windows, batch=config.harvest_batch, rare_every=config.rare_every,
                            splice_windows=windows[:n_splice] if n_splice else None)
    report.to_csv(out / "report.csv", index=False)
    return TrainResult(tset, report, trained, out, state.history)


def export_checkpoint(run_dir: str | Path, out_dir: str | Path) -> tuple[TranscoderSet, dict]:
    """The set as it stands at the last checkpoint of a run in ``run_dir`` (running, stopped or
    finished), written to ``out_dir`` like a finished run (scales folded in) with
    ``snapshot.json``: the run's settings, chunks done of how many, and per-chunk history. A
    snapshot mid-run is not the recipe's set: its learning rate has not decayed and it has seen
    only part of the text; the JSON says which part."""
    tensors, progress = read_checkpoint(Path(run_dir) / "checkpoint", prefix="L")
    config = TranscoderTrainConfig.from_json(progress["config"])
    spec = TranscoderSpec(d_model=progress["d_model"], n_features=config.n_features, activation=config.activation, k=config.k, skip=config.skip)
    dtype = getattr(torch, config.dtype)
    tset = _folded_set(_layers(tensors, spec, dtype, progress["n_layers"]), progress["scales"], progress["model_name"])
    out = write_transcoders(tset, out_dir)
    snapshot = {"run_dir": str(run_dir), "chunks_done": progress["chunks_done"], "n_chunks": config.all_chunks,
                "steps_done": progress["chunks_done"] * config.steps_per_chunk, "total_steps": config.all_steps,
                "tokens_done": progress["chunks_done"] * config.windows_per_chunk * config.seq_len,
                "config": progress["config"], "model_name": progress["model_name"], "history": progress["history"]}
    (out / "snapshot.json").write_text(json.dumps(snapshot, indent=1))
    return tset, snapshot


def _rms(t: Tensor) -> float:
    return float(t.pow(2).sum(-1).mean().sqrt() / t.shape[-1] ** 0.5)


def _optimizer(transcoders: list[Transcoder], config: TranscoderTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for tc in transcoders for p in tc.parameters()], lr=config.lr)


def _train_chunk(state: _Progress, x: Tensor, y: Tensor, config: TranscoderTrainConfig, chunk: int, bar: tqdm) -> tuple[list[float], list[float]]:
    """Phase 4: ``epochs`` seeded passes over the chunk; mean MSE and AuxK per layer."""
    transcoders, optimizer, since = state.transcoders, state.optimizer, state.since_fired
    assert optimizer is not None and since is not None  # set with the transcoders
    rows = x.shape[1]
    totals, aux_totals, steps = [0.0] * len(transcoders), [0.0] * len(transcoders), 0
    step = chunk * config.steps_per_chunk
    for epoch in range(config.epochs):
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + chunk * 101 + epoch))
        for start in range(0, rows, config.batch_size):
            idx = order[start : start + config.batch_size]
            dead = dead_mask(since, config.dead_after)
            loss = torch.zeros((), dtype=transcoders[0].dtype)
            with _autocast(config):
                for ly, tc in enumerate(transcoders):
                    part = layer_loss(tc, x[ly, idx], y[ly, idx], dead=dead[ly], k_aux=config.k_aux, aux_coef=config.aux_coef, l1=config.l1)
                    totals[ly] += part.mse
                    aux_totals[ly] += part.aux
                    loss = loss + part.total.float()
                    since[ly] = torch.where(part.fired, 0, since[ly] + len(idx))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config.total_steps, config.lr, config.warmup_steps, config.final_lr_fraction)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            step += 1
            bar.update(1)
    return [t / steps for t in totals], [t / steps for t in aux_totals]


def _layers(tensors: dict[str, Tensor], spec: TranscoderSpec, dtype: torch.dtype, n_layers: int) -> list[Transcoder]:
    """Each layer's transcoder from a checkpoint's ``L<i>.<name>`` tensors."""
    return [Transcoder(spec, dtype=dtype).load_tensors(_prefixed(tensors, f"L{ly}.")) for ly in range(n_layers)]


def _folded_set(transcoders: list[Transcoder], scales: list, model_name: str) -> TranscoderSet:
    """The set for raw activations: each layer's normalisation scales folded into its weights."""
    return TranscoderSet([_fold(tc, *scales[ly]) for ly, tc in enumerate(transcoders)], model_name)


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
