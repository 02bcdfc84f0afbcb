"""Where the subject's representation matters, per layer and direction: causal tracing (Meng et
al. 2022, "Locating and Editing Factual Associations in GPT", section 2.1) of the subject tokens'
residual stream, run on the forward prompt (subject ``a``) and on the reverse prompt (subject
``b``) of the same pairs.

Phases of :func:`causal_trace_table`:

1. **Clean run**: the prompt's residual stream entering every block (``resid_pre``), and the
   probability of the answer's first token after the prompt (``p_clean``).
2. **Corrupted runs**: the subject's token embeddings (the residual stream entering block 0, so
   Gemma's embedding scale is included) get Gaussian noise of standard deviation ``noise`` x
   sigma, sigma being the standard deviation of those embeddings over every subject token of the
   traced prompts (the paper uses 3 sigma). ``samples`` noise draws per prompt, seeded per pair
   and direction; ``p_corrupt`` is the answer probability averaged over them.
3. **Restored runs**: the same corrupted runs, with the residual stream entering block ``L`` at
   the subject's *last* token set back to its clean value, for every ``L``; ``p_restored`` is
   averaged over the same noise draws. The indirect effect of that state is
   ``p_restored - p_corrupt``; at ``L = 0`` a one-token subject is restored completely, so
   ``p_restored = p_clean`` there.

Rows of one prompt (``samples x (n_layers + 1)``) run in batches of ``batch_size``; only the last
prompt position is unembedded. :func:`trace_summary` averages the indirect effect per direction
and layer over pairs, with a percentile-bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from scrying.axes import Float, Int, Model, Tensor
from scrying.continuations import continuation_tokens, logits_where
from scrying.errors import ConfigError, InvalidInputError
from scrying.models.adapter import model_device
from scrying.prompts import tokenize
from scrying.reversal.pairs import DIRECTIONS, Direction, Pair, prompt_generator
from scrying.sites import Component, Site, recorded
from scrying.stats import BootstrapConfig, interval

COLUMNS = ["index", "relation", "direction", "layer", "p_clean", "p_corrupt", "p_restored"]


@dataclass(frozen=True, kw_only=True)
class CausalTraceConfig:
    """Noise of ``noise`` x sigma on the subject embeddings, ``samples`` draws per prompt, the
    seed of the draws, rows per forward pass."""

    noise: float = 3.0
    samples: int = 10
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.noise < 0:
            raise ConfigError(f"CausalTraceConfig.noise must be >= 0, got {self.noise}")
        if self.samples < 1 or self.batch_size < 1:
            raise ConfigError(f"CausalTraceConfig.samples and batch_size must be >= 1, got {self.samples}, {self.batch_size}")


def _n_tokens(model: Model, text: str, n_special: int) -> int:
    return n_special + (model.to_tokens(text, prepend_bos=False, truncate=False).shape[-1] if text else 0)


def subject_span(model: Model, pair: Pair, direction: Direction) -> tuple[Int[Tensor, " pos"], range]:
    """The prompt's tokens (with BOS) and the positions of its subject's tokens.

    The subject's characters are found from the template (it holds one placeholder); its tokens
    are those of the prompt cut after the subject minus those of the prompt cut before it
    (trailing spaces dropped, so ``"of "`` counts as ``"of"``). The cut tokenization must be a
    prefix of the prompt's, else the subject does not own whole tokens and this is an error.
    """
    template = pair.forward if direction == "forward" else pair.reverse
    subject = pair.subject(direction)
    start = template.index("{a}" if direction == "forward" else "{b}")
    prompt = pair.prompt(direction)
    end = start + len(subject)
    where = pair.where or f"{pair.a!r} / {pair.b!r}"
    tokens = tokenize(model, prompt, what=f"{where}: {direction} prompt")[0]
    n_special = tokens.shape[-1] - model.to_tokens(prompt, prepend_bos=False, truncate=False).shape[-1]
    first = _n_tokens(model, prompt[:start].rstrip(), n_special)
    last = _n_tokens(model, prompt[:end], n_special)
    cut = tokenize(model, prompt[:end], what=f"{where}: {direction} prompt")[0]
    if last <= first or not torch.equal(cut, tokens[:last]):
        raise InvalidInputError(f"{where}: the {direction} prompt {prompt!r} does not tokenize its subject {subject!r} into tokens of its own")
    return tokens, range(first, last)


@torch.no_grad()
def _clean(model: Model, tokens: Int[Tensor, " pos"], answer: int) -> tuple[Float[Tensor, "layer pos d_model"], float]:
    n = model.cfg.n_layers
    sites = [Site(Component.RESID_PRE, layer) for layer in range(n)]
    batch = tokens[None].to(model_device(model))
    read = torch.zeros(batch.shape, dtype=torch.bool, device=batch.device)
    read[0, -1] = True
    with recorded(model, sites, clone=True) as store:
        probs = logits_where(model, batch, read).double().softmax(-1)  # [1 d_vocab]
    return torch.stack([store[s][0] for s in sites]), float(probs[0, answer])


@torch.no_grad()
def _answer_probs(
    model: Model,
    clean: Float[Tensor, "layer pos d_model"],
    noise: Float[Tensor, "sample subject d_model"],
    span: range,
    restore: list[int],
    answer: int,
) -> Float[Tensor, " row"]:
    """One row per (noise draw, restored layer); ``-1``: nothing restored."""
    n_rows = len(restore)
    inputs = clean[0].expand(n_rows, -1, -1).clone()
    inputs[:, span.start : span.stop] += noise
    last = span.stop - 1
    layers = torch.tensor(restore)

    def put_back(layer: int):  # noqa: ANN202
        rows = (layers == layer).nonzero()[:, 0].to(inputs.device)

        def fn(act: Tensor, hook: object) -> Tensor:
            act = act.clone()
            act[rows, last] = clean[layer, last].to(act.dtype)
            return act

        return fn

    forward = {Site(Component.RESID_PRE, layer): put_back(layer) for layer in sorted(set(restore)) if layer >= 0}
    read = torch.zeros(inputs.shape[:2], dtype=torch.bool, device=inputs.device)
    read[:, -1] = True
    logits = logits_where(model, inputs.to(model_device(model)), read, forward=forward)  # [row d_vocab]
    return logits.double().softmax(-1)[:, answer]


def noise_draws(shape: tuple[int, ...], sigma: float, config: CausalTraceConfig, pair: Pair, direction: Direction) -> Tensor:
    """The noise added to one prompt's subject embeddings, ``[sample subject d_model]``, float64,
    seeded by the config's seed, the pair and the direction
    (:func:`scrying.reversal.pairs.prompt_generator`)."""
    generator = prompt_generator(config.seed, pair, direction)
    return torch.randn(shape, generator=generator, dtype=torch.float64) * (config.noise * sigma)


@torch.no_grad()
def causal_trace_table(model: Model, pairs: list[Pair], config: CausalTraceConfig | None = None) -> pd.DataFrame:
    """One row per pair, direction and block ``layer``: the answer's first-token probability
    clean, corrupted, and corrupted with the subject's last-token state entering ``layer``
    restored (module docstring)."""
    config = config or CausalTraceConfig()
    prompts = {(i, d): subject_span(model, pair, d) for i, pair in enumerate(pairs) for d in DIRECTIONS}
    clean = {}
    for (i, d), (tokens, _) in prompts.items():
        answer = continuation_tokens(model, pairs[i].answer(d), what=f"{pairs[i].where or pairs[i].a}: {d} answer")[0]
        clean[i, d] = (*_clean(model, tokens, answer), answer)
    subject_rows = torch.cat([clean[key][0][0, span.start : span.stop] for key, (_, span) in prompts.items()])
    sigma = float(subject_rows.double().std())
    n_layers = model.cfg.n_layers
    out = []
    for (i, d), (_, span) in prompts.items():
        resid, p_clean, answer = clean[i, d]
        draws = noise_draws((config.samples, len(span), resid.shape[-1]), sigma, config, pairs[i], d).to(resid.dtype)
        restore = [layer for _ in range(config.samples) for layer in [-1, *range(n_layers)]]
        noise = draws.repeat_interleave(n_layers + 1, dim=0)
        probs = torch.cat([
            _answer_probs(model, resid, noise[s : s + config.batch_size], span, restore[s : s + config.batch_size], answer)
            for s in range(0, len(restore), config.batch_size)
        ]).reshape(config.samples, n_layers + 1).mean(0)
        for layer in range(n_layers):
            out.append({"index": i, "relation": pairs[i].relation, "direction": d, "layer": layer, "p_clean": p_clean,
                        "p_corrupt": float(probs[0]), "p_restored": float(probs[layer + 1])})
    return pd.DataFrame(out, columns=COLUMNS)


def trace_summary(table: pd.DataFrame, config: BootstrapConfig | None = None) -> pd.DataFrame:
    """Per direction and layer: the mean indirect effect ``p_restored - p_corrupt`` over pairs,
    its bootstrap interval, and the mean clean and corrupted probabilities."""
    config = config or BootstrapConfig()
    rows = []
    for (direction, layer), part in table.groupby(["direction", "layer"], sort=True):
        effect = torch.tensor((part["p_restored"] - part["p_corrupt"]).to_numpy(), dtype=torch.float64)
        low, high = interval(effect, config)
        rows.append({"direction": direction, "layer": int(layer), "indirect_effect": float(effect.mean()),
                     "ci_low": float(low), "ci_high": float(high), "p_clean": float(part["p_clean"].mean()),
                     "p_corrupt": float(part["p_corrupt"].mean()), "n": len(part)})
    return pd.DataFrame(rows)
