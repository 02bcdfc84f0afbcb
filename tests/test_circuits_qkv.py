"""Heads as three receivers (their query, key and value inputs; ``EAPConfig.split_qkv``), checked
exactly on tiny float64 Gemma 3 (grouped-query: 4 query heads share 1 key/value head), Llama and
GPT-2 models:

- the q, k and v scores of an edge sum to the unsplit edge's score (the three inputs are the same
  residual stream), for EAP and EAP-IG;
- corrupting an edge's q, k and v parts together is corrupting the unsplit edge;
- each part's EAP score is the first-order term of patching that part alone.

Tolerances are relative 1e-6: Gemma's RMSNorm computes in float32 even in a float64 model.
"""

from __future__ import annotations

import pytest
import torch

from scrying.circuits.circuit import find_circuit, measure_edges
from scrying.circuits.config import EAPConfig
from scrying.circuits.eap import RunPair, eap_scores, run_pair
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.patching import edge_effects, patch_edges
from scrying.metrics import LogitDiff
from scrying.toys.tasks import BOS_ID
from scrying.toys.vocab import SPECIALS
from tests.tiny_models import ARCHS, tiny


@pytest.fixture(scope="module", params=ARCHS)
def model(request, tmp_path_factory):
    return tiny(request.param, tmp_path_factory.mktemp("tiny-qkv"))


def _pair(batch: int = 3, length: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(len(SPECIALS), len(SPECIALS) + 16, (batch, length), generator=g)
    clean = torch.cat([torch.full((batch, 1), BOS_ID), body], dim=1)
    corrupt = clean.clone()
    corrupt[:, 3] = (clean[:, 3] - len(SPECIALS) + 5) % 16 + len(SPECIALS)
    corrupt[:, 6] = (clean[:, 6] - len(SPECIALS) + 9) % 16 + len(SPECIALS)
    metric = LogitDiff(correct=tuple(clean[:, 3].tolist()), incorrect=tuple(corrupt[:, 3].tolist()))
    return clean, corrupt, metric


def _merged(split: torch.Tensor, plain: ComponentNodes, split_nodes: ComponentNodes) -> torch.Tensor:
    """Split scores [src, split dst] summed over each head's q, k, v: [src, plain dst]."""
    out = torch.zeros(split.shape[0], len(plain.receivers), dtype=split.dtype)
    index = {name: i for i, name in enumerate(plain.receivers)}
    for j, name in enumerate(split_nodes.receivers):
        out[:, index[name.split("<")[0]]] += split[:, j]
    return out


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_split_scores_sum_to_the_head_score(model, method):
    clean, corrupt, metric = _pair()
    plain, split = ComponentNodes.of(model), ComponentNodes.of(model, split_qkv=True)
    assert len(split.receivers) == len(plain.receivers) + 2 * model.cfg.n_layers * model.cfg.n_heads
    config = EAPConfig(method=method, ig_steps=3, chunk=4)
    scores, pair = eap_scores(model, clean, corrupt, metric, config)
    split_scores, _ = eap_scores(model, clean, corrupt, metric, EAPConfig(method=method, ig_steps=3, chunk=4, split_qkv=True), pair=pair)
    assert torch.allclose(_merged(split_scores, plain, split), scores, atol=1e-6 * float(scores.abs().max()), rtol=0)
    # the parts are not copies of one another: q, k and v inputs matter differently
    q = split_scores[:, split.head_receiver(1, 0, 0)]
    k = split_scores[:, split.head_receiver(1, 0, 1)]
    v = split_scores[:, split.head_receiver(1, 0, 2)]
    assert (q - k).abs().max() > 1e-6 and (k - v).abs().max() > 1e-6


def test_patching_all_three_parts_is_patching_the_edge(model):
    clean, corrupt, metric = _pair()
    plain, split = ComponentNodes.of(model), ComponentNodes.of(model, split_qkv=True)
    pair = run_pair(model, clean, corrupt, metric, plain)
    edges = [(u, v) for u, v in plain.edges if plain.receivers[v].startswith("a")][::3]
    plain_masks = torch.zeros(len(edges), len(plain.sources), len(plain.receivers), dtype=torch.bool)
    split_masks = torch.zeros(len(edges), len(split.sources), len(split.receivers), dtype=torch.bool)
    for i, (u, v) in enumerate(edges):
        plain_masks[i, u, v] = True
        for part in ("q", "k", "v"):
            split_masks[i, u, split.receivers.index(f"{plain.receivers[v]}<{part}>")] = True
    together = patch_edges(model, clean, pair, metric, split_masks, split)
    alone = patch_edges(model, clean, pair, metric, plain_masks, plain)
    assert torch.allclose(together, alone, atol=1e-6 * float((alone - pair.clean_metric.mean()).abs().max()), rtol=0)
    ends = patch_edges(model, clean, pair, metric, torch.stack([torch.zeros_like(split.edge_mask), split.edge_mask]), split)
    span = abs(float(pair.clean_metric.mean() - pair.corrupt_metric.mean()))
    assert float(ends[0]) == pytest.approx(float(pair.clean_metric.mean()), abs=1e-6 * span)
    assert float(ends[1]) == pytest.approx(float(pair.corrupt_metric.mean()), abs=1e-6 * span)


def test_each_part_is_first_order_patching(model):
    """Shrink the corruption to eps: each q/k/v edge's exact effect / eps -> its EAP score / eps."""
    clean, corrupt, metric = _pair(batch=2)
    split = ComponentNodes.of(model, split_qkv=True)
    pair = run_pair(model, clean, corrupt, metric, split)
    eps = 1e-3  # small enough for second-order terms, large enough for Gemma's float32 norms
    small = RunPair(pair.clean, pair.clean + eps * (pair.corrupt - pair.clean), pair.clean_metric, pair.corrupt_metric)
    scores, _ = eap_scores(model, clean, corrupt, metric, EAPConfig(method="eap", split_qkv=True), pair=small)
    edges = [(u, v) for u, v in split.edges if split.receivers[v].startswith("a")]
    effects = edge_effects(model, clean, small, metric, edges, split_qkv=True)
    predicted = torch.stack([scores[u, v] for u, v in edges])
    assert predicted.abs().max() > 1e-9
    assert torch.allclose(predicted / eps, effects / eps, atol=2e-2 * float(predicted.abs().max() / eps), rtol=0)


def test_circuit_names_and_measures_split_edges(model):
    clean, corrupt, metric = _pair()
    circuit = find_circuit(model, clean, corrupt, metric, EAPConfig(method="eap-ig", ig_steps=3, split_qkv=True))
    assert {t[-3:] for t in circuit.edges["target"] if t.startswith("a")} == {"<q>", "<k>", "<v>"}
    measured = measure_edges(model, clean, metric, circuit, top=4)
    assert measured.edges["patched_effect"].head(4).notna().all()
