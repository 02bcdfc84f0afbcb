"""Edge attribution patching: EAP and EAP-IG scores for every edge of the component graph.

Implements Syed, Rager & Conmy (2023), "Attribution Patching Outperforms Automated Circuit
Discovery", eq. (2): ``score(u -> v) = (a_u(corrupt) - a_u(clean)) . dm/dx_v |clean``, and
Hanna, Pezzelle & Belinkov (2024), "Have Faith in Faithfulness", EAP-IG (eq. 3, the variant
that integrates over the *inputs*): the gradient is averaged over the ``m`` points
``x_in = e_corrupt + k/m (e_clean - e_corrupt)``, ``k = 0 .. m-1``, on the straight line between
the corrupt and the clean embeddings (as in hannamw/EAP-IG ``get_scores_eap_ig``). Scores are
averaged over prompts; the sign convention is that of :mod:`scrying.circuits.metrics`.

Phases:

1. Clean run: record every source's output ``a_u(clean)`` and the clean metric.
2. Baseline: the corrupt run's outputs (or zero, or the clean mean), and its metric.
3. Gradients: replicated forward passes (:mod:`scrying.circuits.receivers`) with a zero leaf at
   every receiver's input; one pass over the clean input (EAP) or ``m`` interpolated inputs per
   prompt (EAP-IG), chunked; ``torch.autograd.grad`` of the summed metric.
4. Scores: ``einsum`` of (corrupt - clean) outputs with the mean receiver-input gradients, summed
   over positions and the model dimension, masked to existing edges.

Receivers: by default a head is one receiver (its q, k and v inputs together); with
``EAPConfig.split_qkv`` it is three, as in hannamw/EAP-IG, in the scores and in exact patching
alike (each edge into a head then splits into its q, k and v parts, whose EAP / EAP-IG scores sum
to the unsplit edge's score: the three inputs are the same residual stream). The
interpolation (``blocks.0.hook_resid_pre``, ``k / m`` for ``k = 0 .. m-1``), the score and the
averaging over steps and prompts are the same.

Agreement with exact per-edge patching (tests/test_circuits.py, 2-layer induction toy, all 54
edges, 20 steps, 48 prompts, counterfactuals with a logit-difference metric): Spearman 0.93-0.98
when the copied token is replaced, 0.91-0.95 when the induction head's key is broken (prompt
seeds 1-4); plain EAP: 0.82 and 0.46. With 16 prompts the prompt sample alone moves it by about
0.05. The residual disagreement is mostly redundancy: single-edge patching credits each of
several previous-token heads only with what the others cannot replace, while the integral splits
the whole effect among them. A saturating metric (log-probability of an answer that is already
certain) or one without a counterfactual answer lowers agreement; more steps do not help there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import einops
import torch
from tqdm.auto import tqdm

from scrying.axes import Float, Int, Model, Tensor
from scrying.circuits.config import EAPConfig
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.receivers import receiver_forward, receiver_gradients, record_outputs
from scrying.errors import PromptError
from scrying.metrics import Metric

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPair:
    """Node outputs and metric values of the clean run and of the baseline (corrupt) run."""

    clean: Float[Tensor, "src batch pos d_model"]
    corrupt: Float[Tensor, "src batch pos d_model"]
    clean_metric: Float[Tensor, " batch"]
    corrupt_metric: Float[Tensor, " batch"] | None  # None for the zero baseline


def check_pair(clean: Tensor, corrupt: Tensor | None) -> None:
    """Raise :class:`PromptError` unless clean and corrupt tokens have the same shape."""
    if clean.ndim != 2:
        raise PromptError(f"clean tokens must be [batch, pos], got shape {tuple(clean.shape)}")
    if corrupt is None:
        return
    if corrupt.shape[-1] != clean.shape[-1]:
        raise PromptError(
            f"corrupt prompt is {corrupt.shape[-1]} tokens long but the clean prompt is "
            f"{clean.shape[-1]}; they must have the same token length"
        )
    if corrupt.shape != clean.shape:
        raise PromptError(
            f"corrupt tokens have shape {tuple(corrupt.shape)}, clean {tuple(clean.shape)}"
        )


def run_pair(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "corrupt_batch corrupt_pos"] | None,
    metric: Metric,
    nodes: ComponentNodes,
    baseline: str = "corrupt",
) -> RunPair:
    """Phases 1-2: outputs of the clean run and of the baseline."""
    check_pair(clean, corrupt)
    clean_out, clean_metric = record_outputs(model, clean, nodes, metric)
    if baseline == "corrupt":
        if corrupt is None:
            raise PromptError("baseline 'corrupt' needs corrupt tokens; got none")
        corrupt_out, corrupt_metric = record_outputs(model, corrupt, nodes, metric)
        return RunPair(clean_out, corrupt_out, clean_metric, corrupt_metric)
    if baseline == "mean-input":
        # A real run whose input is the clean embeddings' mean over prompts and positions: every
        # node's corrupt output is its output there, where EAP-IG's interpolation starts.
        mean = einops.reduce(clean_out[0], "b p d -> d", "mean")
        resid0 = einops.repeat(mean, "d -> b p d", b=clean_out.shape[1], p=clean_out.shape[2]).contiguous()
        corrupt_out, corrupt_metric = record_outputs(model, clean, nodes, metric, resid0=resid0)
        return RunPair(clean_out, corrupt_out, clean_metric, corrupt_metric)
    return RunPair(clean_out, torch.zeros_like(clean_out), clean_metric, None)  # "zero"


def eap_scores(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "corrupt_batch corrupt_pos"] | None,
    metric: Metric,
    config: EAPConfig | None = None,
    *,
    pair: RunPair | None = None,
) -> tuple[Float[Tensor, "src dst"], RunPair]:
    """EAP or EAP-IG score of every edge (zero where no edge exists), and the runs used."""
    config = config or EAPConfig()
    nodes = ComponentNodes.of(model, split_qkv=config.split_qkv)
    pair = pair or run_pair(model, clean, corrupt, metric, nodes, config.baseline)
    grads = mean_input_gradients(model, clean, pair, metric, nodes, config)
    diff = pair.corrupt - pair.clean
    scores = torch.einsum("sbpd,tbpd->st", diff, grads) / clean.shape[0]
    return scores * nodes.edge_mask.to(scores.device), pair


def mean_input_gradients(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    pair: RunPair,
    metric: Metric,
    nodes: ComponentNodes,
    config: EAPConfig,
) -> Float[Tensor, "dst batch pos d_model"]:
    """Phase 3: each receiver's input gradient, at the clean input (EAP) or averaged over the
    EAP-IG interpolation points."""
    steps = 1 if config.method == "eap" else config.ig_steps
    batch = clean.shape[0]
    e_clean, e_corrupt = pair.clean[0], pair.corrupt[0]
    # Rows: (step, prompt); alpha = k / steps for k = 0..steps-1 (EAP: the clean input, alpha 1).
    alphas = torch.ones(1) if config.method == "eap" else torch.arange(steps) / steps
    row_alpha = einops.repeat(alphas, "s -> (s b)", b=batch)
    row_prompt = einops.repeat(torch.arange(batch), "b -> (s b)", s=steps)
    total: Tensor | None = None
    starts = range(0, steps * batch, config.chunk)
    for start in tqdm(starts, disable=not config.progress, desc=config.method):
        idx = slice(start, start + config.chunk)
        prompts, alpha = row_prompt[idx], row_alpha[idx].to(e_clean.dtype)
        alpha = einops.rearrange(alpha, "n -> n 1 1").to(e_clean.device)
        resid0 = e_corrupt[prompts] + alpha * (e_clean[prompts] - e_corrupt[prompts])
        with torch.enable_grad():
            run = receiver_forward(model, clean[prompts], nodes, resid0=resid0, taps=True)
            rows = einops.repeat(prompts, "n -> (r n)", r=nodes.n_replicas)
            value = metric(run.logits, rows).sum() / nodes.n_replicas
            grads = receiver_gradients(value, run, nodes)
        # Accumulate per prompt: sum over this chunk's rows of the same prompt.
        part = torch.zeros(grads.shape[0], batch, *grads.shape[2:], dtype=grads.dtype, device=grads.device)
        part.index_add_(1, prompts.to(grads.device), grads)
        total = part if total is None else total + part
    assert total is not None
    return total / steps

