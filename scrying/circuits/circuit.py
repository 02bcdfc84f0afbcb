"""The component circuit of a behaviour: scored edges between embed, heads, MLPs and logits.

:func:`find_circuit` runs EAP or EAP-IG (:mod:`scrying.circuits.eap`) and returns a
:class:`ComponentCircuit`; :func:`measure_edges` adds the exact patched effect of chosen edges
(:mod:`scrying.circuits.patching`). The result is a plain dataclass + DataFrame; conversion to
the shared attribution-graph type lives elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from scrying.axes import Int, Model, Tensor
from scrying.circuits.config import EAPConfig, PatchConfig
from scrying.circuits.eap import RunPair, eap_scores
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.patching import edge_effects
from scrying.metrics import LogitDiff, Metric
from scrying.prompts import single_token, tokenize


@dataclass(frozen=True)
class ComponentCircuit:
    """Scored edges of the component graph.

    ``nodes``: every node name ("embed", "a{l}.h{h}", "m{l}", "logits"). ``edges``: one row per
    edge, columns ``source``, ``target`` (a receiver: a node, or a head's ``<q>``, ``<k>``,
    ``<v>`` input with ``config.split_qkv``), ``score`` (EAP/EAP-IG estimate of
    ``metric(edge corrupted) - metric(clean)``, averaged over prompts) and ``patched_effect``
    (the exact value of the same quantity where measured, else NaN), sorted by ``|score|``.
    ``clean_metric`` / ``corrupt_metric``: metric means (``corrupt_metric`` is NaN for zero/mean
    baselines). ``pair``: the recorded node outputs, reused by patching and faithfulness.
    """

    nodes: tuple[str, ...]
    edges: pd.DataFrame
    clean_metric: float
    corrupt_metric: float
    config: EAPConfig
    pair: RunPair


def find_circuit(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "corrupt_batch corrupt_pos"] | None,
    metric: Metric,
    config: EAPConfig | None = None,
) -> ComponentCircuit:
    """Score every edge with EAP / EAP-IG (``config.method``)."""
    config = config or EAPConfig()
    nodes = ComponentNodes.of(model, split_qkv=config.split_qkv)
    scores, pair = eap_scores(model, clean, corrupt, metric, config)
    rows = [(nodes.sources[u], nodes.receivers[v], float(scores[u, v])) for u, v in nodes.edges]
    edges = pd.DataFrame(rows, columns=["source", "target", "score"])
    edges["patched_effect"] = float("nan")
    edges = edges.reindex(edges["score"].abs().sort_values(ascending=False).index)
    corrupt_metric = float("nan") if pair.corrupt_metric is None else float(pair.corrupt_metric.mean())
    return ComponentCircuit(
        nodes=nodes.names,
        edges=edges.reset_index(drop=True),
        clean_metric=float(pair.clean_metric.mean()),
        corrupt_metric=corrupt_metric,
        config=config,
        pair=pair,
    )


def measure_edges(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    metric: Metric,
    circuit: ComponentCircuit,
    top: int | None = None,
    config: PatchConfig | None = None,
) -> ComponentCircuit:
    """A copy of ``circuit`` with ``patched_effect`` measured for the ``top`` edges (all if None)."""
    split = circuit.config.split_qkv
    nodes = ComponentNodes.of(model, split_qkv=split)
    chosen = circuit.edges.head(top) if top is not None else circuit.edges
    pairs = nodes.edge_index(chosen["source"], chosen["target"])
    effects = edge_effects(model, clean, circuit.pair, metric, pairs, config, split_qkv=split)
    edges = circuit.edges.copy()
    edges.loc[chosen.index, "patched_effect"] = effects.tolist()
    return replace(circuit, edges=edges)


def prompt_pair(
    model: Model, clean: str, corrupt: str, correct: str, incorrect: str
) -> tuple[Int[Tensor, "1 pos"], Int[Tensor, "1 pos"], LogitDiff]:
    """Tokens of a clean/corrupt prompt pair (same token length, else
    :class:`~scrying.errors.PromptError`) and the logit-difference metric ``correct - incorrect``
    at the last position."""
    from scrying.circuits.eap import check_pair

    clean_tokens = tokenize(model, clean, what="clean prompt")
    corrupt_tokens = tokenize(model, corrupt, what="corrupt prompt")
    check_pair(clean_tokens, corrupt_tokens)
    metric = LogitDiff(
        correct=(single_token(model, correct, what="correct token"),),
        incorrect=(single_token(model, incorrect, what="incorrect token"),),
    )
    return clean_tokens, corrupt_tokens, metric


