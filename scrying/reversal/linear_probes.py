"""Where each direction is stored: linear probes (Allen-Zhu & Li 2023, "Physics of Language
Models: Part 3.1", section 5's P-probing) that read the answer from the residual stream at the
subject's last token, per layer: ``b`` at ``a``'s last token of the forward prompt, ``a`` at
``b``'s last token of the reverse prompt; on held-out pairs, beside the same probe trained on
shuffled labels.

Phases of :func:`probe_table`:

1. **Read** (:func:`subject_residuals`): each prompt cut after its subject
   (:func:`scrying.reversal.causal_tracing.subject_span`; the model is causal, so the last
   position of the cut prompt holds the state of the subject's last token in the whole prompt),
   the residual stream at that position entering block 0 (the token embeddings, ``layer = -1``)
   and after every block (``layer = 0 .. n_layers - 1``, as :mod:`scrying.reversal.lens`).
2. **Answers**: per relation and direction, the classes are the relation's distinct answers of
   that direction. A pair's answer has no other pair in a one-to-one relation, so a held-out
   pair's class is never seen in training: the probe cannot have a free weight vector per class.
   Each class ``c`` is instead represented by a fixed vector ``e_c``, the mean token embedding of
   its answer text (:func:`answer_vectors`, read like the residuals), reduced to the
   ``answer_dims`` principal components of the relation's answers (all of them, held-out ones
   included: the candidate set is known before any label is) and scaled to unit norm
   (:func:`answer_coordinates`). Without the reduction a fitted ``W`` can only point into the span
   of the training answers' vectors, and a held-out answer, mostly outside it, would lose to every
   training answer whatever the residual holds. The probe is the multinomial logistic regression
   ``p(c | h) = softmax_c(h' W e_c)``: one weight vector ``W e_c`` per class, tied through ``W``
   (``d_model x answer_dims``), ``h'`` the residual standardised with the training pairs' mean
   and standard deviation per dimension.
3. **Fit** (:func:`fit_bilinear`): cross-entropy of the training pairs' answers, the softmax
   over the answers of the training pairs only (a held-out pair's answer, a negative of every
   training pair otherwise, would be pushed down by the fit and never predicted), plus
   ``weight_decay * ||W||^2``, full batch, by L-BFGS. The objective is convex and its minimiser
   lies in (span of the training residuals) x (span of their class vectors), so ``W`` is fitted in
   those coordinates (at most ``n_train x n_classes`` numbers per layer) and is exact, not an
   approximation; started at 0, the fit has no random seed.
4. **Held out** (:func:`cross_validated`): ``folds`` folds of the pairs (a seeded split; pairs
   that share their prompt, the cities of one state in reverse, fall in one fold, so no held-out
   prompt was seen in training), each scored by the probe fitted on the others: top-1 among all the relation's answers, right when
   the top class is a right answer of the prompt (in the many direction of a one-to-many relation
   any of them, :func:`scrying.reversal.pairs.known_true`), each prompt counted once. Chance is
   ``n_right / n_classes``.
5. **Shuffled-label control**: the same probe and folds, the training pairs' labels permuted
   among them (seeded per fold); it measures what the probe reads without the fact (the answers'
   frequencies, the fit's capacity) and should sit at chance.
6. **Summarise** (:func:`probe_summary`): per relation (and ``all``), direction and layer, the
   mean held-out accuracy and the shuffled control's, each with a percentile-bootstrap interval
   over pairs, and chance.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
from einops import einsum, rearrange

from scrying.axes import Float, Int, Model, Tensor
from scrying.continuations import continuation_tokens
from scrying.errors import ConfigError, InvalidInputError
from scrying.reversal.causal_tracing import subject_span
from scrying.reversal.lens import last_position_resid
from scrying.reversal.pairs import DIRECTIONS, Direction, Pair, known_true
from scrying.sites import Component, Site, recorded
from scrying.stats import BootstrapConfig, interval

#: the columns of :func:`probe_table` (one row per pair, direction and layer)
COLUMNS = ["index", "relation", "direction", "layer", "correct", "correct_shuffled", "n_right", "n_classes"]


@dataclass(frozen=True, kw_only=True)
class LinearProbeConfig:
    """Folds of the held-out split, the L2 penalty, L-BFGS iterations, the seed of the split and
    of the shuffled labels, prompts per forward pass, and the bootstrap of the summary."""

    folds: int = 5
    answer_dims: int = 16
    weight_decay: float = 1e-3
    max_iter: int = 200
    seed: int = 0
    batch_size: int = 16
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def __post_init__(self) -> None:
        for name in ("folds", "answer_dims", "max_iter", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"LinearProbeConfig.{name} must be a positive integer, got {value!r}")
        if self.folds < 2:
            raise ConfigError(f"LinearProbeConfig.folds must be >= 2 (pairs are held out), got {self.folds}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, int | float) or not self.weight_decay > 0:
            raise ConfigError(f"LinearProbeConfig.weight_decay must be a positive number, got {self.weight_decay!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"LinearProbeConfig.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.bootstrap, BootstrapConfig):
            raise ConfigError(f"LinearProbeConfig.bootstrap must be a BootstrapConfig, got {type(self.bootstrap).__name__}")

    def settings(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "bootstrap"}, "n_bootstrap": self.bootstrap.n_resamples}


# --------------------------------------------------------------------------- phase 1 and 2: read
@torch.no_grad()
def _resid_with_embeddings(model: Model, prompts: list[list[int]]) -> Float[Tensor, "batch layer d_model"]:
    """The last position's residual stream entering block 0, then after every block."""
    entering = Site(Component.RESID_PRE, 0)
    with recorded(model, [entering], clone=True) as store:
        after = last_position_resid(model, prompts)  # batch layer d_model
    last = torch.tensor([len(p) - 1 for p in prompts])
    embedded = store[entering][torch.arange(len(prompts)), last.to(store[entering].device)]
    return torch.cat([embedded[:, None].to(after.dtype), after], dim=1)


@torch.no_grad()
def subject_residuals(model: Model, pairs: list[Pair], direction: Direction, batch_size: int = 16) -> Float[Tensor, "prompt layer d_model"]:
    """Per pair, the residual stream at the subject's last token of its ``direction`` prompt:
    layer ``0`` of the result is the token embeddings, layer ``l + 1`` the stream after block ``l``
    (float32, on the CPU)."""
    cut = []
    for pair in pairs:
        tokens, span = subject_span(model, pair, direction)
        cut.append(tokens[: span.stop].tolist())
    rows = [_resid_with_embeddings(model, cut[s : s + batch_size]).float().cpu() for s in range(0, len(cut), batch_size)]
    return torch.cat(rows)


@torch.no_grad()
def answer_vectors(model: Model, answers: list[str], batch_size: int = 16) -> Float[Tensor, "answer d_model"]:
    """Per answer text (joined to a prompt by one space), the mean of its tokens' embeddings (the
    residual stream entering block 0, so an embedding scale the model applies is included)."""
    out = []
    entering = Site(Component.RESID_PRE, 0)
    for s in range(0, len(answers), batch_size):
        chunk = [continuation_tokens(model, " " + a, what="answer") for a in answers[s : s + batch_size]]
        with recorded(model, [entering]) as store:
            last_position_resid(model, chunk)  # one pass fills the hook; the tokens' embeddings are read
        emb = store[entering].float().cpu()  # batch pos d_model (right-padded)
        for i, c in enumerate(chunk):
            out.append(emb[i, : len(c)].mean(0))
    return torch.stack(out)


def answer_coordinates(vectors: Float[Tensor, "c d_model"], dims: int) -> Float[Tensor, "c k"]:
    """The answers' vectors centred, projected on their ``dims`` principal components (fewer
    when there are fewer answers) and scaled to unit norm."""
    centred = vectors.double() - vectors.double().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vh[: min(dims, vh.shape[0])].T
    return reduced / reduced.norm(dim=-1, keepdim=True).clamp(min=1e-12)


# --------------------------------------------------------------------------- phase 3: fit
def _basis(x: Float[Tensor, "n d"]) -> Float[Tensor, "d r"]:
    """An orthonormal basis of the row space of ``x`` (singular values above a relative tolerance)."""
    _, s, vh = torch.linalg.svd(x.double(), full_matrices=False)
    keep = s > s.max().clamp(min=1e-30) * 1e-9
    return vh[keep].T


def fit_bilinear(
    x: Float[Tensor, "n layer d_model"], y: Int[Tensor, " n"], classes: Float[Tensor, "c k"], config: LinearProbeConfig
) -> BilinearProbe:
    """The probe of every layer at once (phase 3 of the module docstring): standardisation from
    ``x``, ``W`` per layer minimising the mean cross-entropy of ``y`` plus
    ``weight_decay * ||W||^2``."""
    x = x.double()
    mean, std = x.mean(0), x.std(0, correction=0).clamp(min=1e-6)  # layer d_model
    z = (x - mean) / std
    e = classes.double() / classes.double().norm(dim=-1, keepdim=True).clamp(min=1e-12)
    seen, y = torch.unique(y, return_inverse=True)  # the softmax runs over the training answers only
    q_e = _basis(e[seen])  # d r_e
    e_red = e[seen] @ q_e  # seen r_e
    bases = [_basis(z[:, layer]) for layer in range(z.shape[1])]
    width = max(b.shape[1] for b in bases)
    q_x = torch.zeros(z.shape[1], z.shape[2], width, dtype=torch.float64)
    for layer, b in enumerate(bases):
        q_x[layer, :, : b.shape[1]] = b
    z_red = einsum(z, q_x, "n layer d, layer d r -> n layer r")
    b = torch.zeros(z.shape[1], width, e_red.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([b], max_iter=config.max_iter, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")
    target = y.repeat_interleave(z.shape[1])

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = einsum(z_red, b, e_red, "n layer r, layer r s, c s -> n layer c")
        loss = torch.nn.functional.cross_entropy(rearrange(logits, "n layer c -> (n layer) c"), target) * z.shape[1]
        loss = loss + config.weight_decay * (b**2).sum()
        loss.backward()
        return loss

    if b.numel():  # else the training residuals do not vary (one prompt): W = 0, no direction to fit
        optimizer.step(closure)
    weight = einsum(q_x, b.detach(), q_e, "layer d r, layer r s, e s -> layer d e")
    return BilinearProbe(mean, std, weight, e)


@dataclass(frozen=True)
class BilinearProbe:
    """A fitted probe: the standardisation, ``W`` per layer, and the unit class vectors."""

    mean: Float[Tensor, "layer d_model"]
    std: Float[Tensor, "layer d_model"]
    weight: Float[Tensor, "layer d_model k"]
    classes: Float[Tensor, "c k"]

    def logits(self, x: Float[Tensor, "n layer d_model"]) -> Float[Tensor, "n layer c"]:
        z = (x.double() - self.mean) / self.std
        return einsum(z, self.weight, self.classes, "n layer d, layer d e, c e -> n layer c")


# --------------------------------------------------------------------------- phase 4 and 5: held out
def fold_of(groups: list[str], folds: int, seed: int) -> list[int]:
    """Each item's fold: the distinct groups in a seeded shuffle dealt round-robin, every item in
    its group's fold (items of one group are never split)."""
    order = list(dict.fromkeys(groups))
    random.Random(seed).shuffle(order)
    where = {g: k % folds for k, g in enumerate(order)}
    return [where[g] for g in groups]


def cross_validated(
    x: Float[Tensor, "n layer d_model"], y: Int[Tensor, " n"], right: Float[Tensor, "n c"],
    classes: Float[Tensor, "c k"], config: LinearProbeConfig, *, key: str = "", groups: list[str] | None = None,
) -> tuple[Float[Tensor, "n layer"], Float[Tensor, "n layer"]]:
    """Held-out correctness of every item at every layer, for the probe and for its shuffled-label
    control (phases 4 and 5). ``right[i, c]`` is 1 where class ``c`` is a right answer of item ``i``;
    ``key`` (the relation and direction) seeds the split and the permutations; items of one of
    ``groups`` (default: each item its own) are held out together."""
    n = x.shape[0]
    groups = groups if groups is not None else [str(i) for i in range(n)]
    if len(set(groups)) < config.folds:
        raise InvalidInputError(f"{key or 'probe'}: {len(set(groups))} prompts cannot be split into {config.folds} folds")
    fold = torch.tensor(fold_of(groups, config.folds, hash_seed(config.seed, key)))
    correct = torch.zeros(n, x.shape[1], dtype=torch.float64)
    shuffled = torch.zeros(n, x.shape[1], dtype=torch.float64)
    for k in range(config.folds):
        train, test = (fold != k).nonzero()[:, 0], (fold == k).nonzero()[:, 0]
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(hash_seed(config.seed, f"{key}/{k}")))
        for labels, out in ((y[train], correct), (y[train][perm], shuffled)):
            probe = fit_bilinear(x[train], labels, classes, config)
            top = probe.logits(x[test]).argmax(-1)  # test layer
            out[test] = right[test].gather(1, top).double()
    return correct, shuffled


def hash_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the run's seed and a key (stable across runs, unlike ``hash``)."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# --------------------------------------------------------------------------- the table
def probe_table(model: Model, pairs: list[Pair], config: LinearProbeConfig | None = None) -> pd.DataFrame:
    """One row per pair, direction and layer (``-1``: the token embeddings; ``l``: after block
    ``l``): whether the held-out probe's top answer is right (``correct``), the same for the
    shuffled-label control (``correct_shuffled``), the prompt's right answers and the relation's
    classes (``n_right / n_classes`` is chance). ``index`` is the pair's position in ``pairs``.

    A prompt shared by several pairs (the many direction of a one-to-many relation: "The state of
    Texas has a city called" for every Texan city) is one row, under its first pair's index: its
    pairs are one input, held out in one fold, with one set of right answers, so counting each
    would weight a state by its number of cities and count one prediction many times. Every pair
    still trains the probe (one example per right answer)."""
    config = config or LinearProbeConfig()
    rows: list[dict[str, Any]] = []
    for relation in dict.fromkeys(p.relation for p in pairs):
        members = [i for i, p in enumerate(pairs) if p.relation == relation]
        chosen = [pairs[i] for i in members]
        for direction in DIRECTIONS:
            answers = [p.b if direction == "forward" else p.a for p in chosen]
            names = list(dict.fromkeys(answers))
            where = {name: c for c, name in enumerate(names)}
            right = torch.zeros(len(chosen), len(names))
            for j, i in enumerate(members):
                for name in known_true(pairs, i, direction) & set(names):
                    right[j, where[name]] = 1.0
            y = torch.tensor([where[a] for a in answers])
            x = subject_residuals(model, chosen, direction, config.batch_size)
            classes = answer_coordinates(answer_vectors(model, names, config.batch_size), config.answer_dims)
            subjects = [p.subject(direction) for p in chosen]  # one prompt: held out as one
            correct, shuffled = cross_validated(x, y, right, classes, config, key=f"{relation}/{direction}", groups=subjects)
            n_right = right.sum(1)
            counted: set[str] = set()
            for j, i in enumerate(members):
                if subjects[j] in counted:  # one prompt, one row: its pairs share input, fold and right answers
                    continue
                counted.add(subjects[j])
                for layer in range(x.shape[1]):
                    rows.append({"index": i, "relation": relation, "direction": direction, "layer": layer - 1,
                                 "correct": bool(correct[j, layer]), "correct_shuffled": bool(shuffled[j, layer]),
                                 "n_right": int(n_right[j]), "n_classes": len(names)})
    return pd.DataFrame(rows, columns=COLUMNS)


def probe_summary(table: pd.DataFrame, config: BootstrapConfig | None = None) -> pd.DataFrame:
    """Per relation (in first-seen order, then ``all``), direction and layer: ``n`` pairs, the
    held-out ``accuracy`` and the ``shuffled`` control's, each with its 95% bootstrap interval
    (``_low``, ``_high``) over pairs, and ``chance`` (the mean of ``n_right / n_classes``)."""
    config = config or BootstrapConfig()
    parts = [(r, table[table.relation == r]) for r in dict.fromkeys(table.relation)]
    if len(parts) > 1:
        parts.append(("all", table))
    rows = []
    for relation, part in parts:
        for (direction, layer), cell in part.groupby(["direction", "layer"], sort=True):
            row: dict[str, Any] = {"relation": relation, "direction": direction, "layer": int(layer), "n": len(cell)}
            for name, column in (("accuracy", "correct"), ("shuffled", "correct_shuffled")):
                values = torch.tensor(cell[column].to_numpy(dtype=float), dtype=torch.float64)
                low, high = interval(values, config)
                row.update({name: float(values.mean()), f"{name}_low": float(low), f"{name}_high": float(high)})
            row["chance"] = float((cell.n_right / cell.n_classes).mean())
            rows.append(row)
    return pd.DataFrame(rows)
