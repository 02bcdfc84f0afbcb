"""Frozen attention applied at ``hook_z`` (one pattern for the whole batch) is the frozen pattern.

* ``pattern_times_values`` equals the attention's own computation with grouped-query heads
  (``repeat_kv``: each key/value head serves consecutive query heads).
* On the tiny Gemma-3 and GPT-2 models the clean run finds ``hook_z`` to be pattern times values,
  and a feature graph built that way equals the graph built by freezing ``hook_pattern`` itself
  (the fallback), edge for edge.
"""

from __future__ import annotations

import pytest
import torch

from scrying.attribution import FeatureGraphConfig, build_neuron_graph
from scrying.attribution import replacement as replacement_mod
from scrying.attribution.frozen_attention import pattern_times_values
from scrying.attribution.replacement import clean_run
from scrying.prompts import tokenize
from tests.tiny_models import tiny

PROMPT = "t1 t5 t2 t7 t1 t5"


def test_pattern_times_values_is_grouped_query_attention():
    gen = torch.Generator().manual_seed(0)
    batch, q, kv_heads, rep, d = 3, 5, 2, 3, 4
    pattern = torch.rand(1, kv_heads * rep, q, q, generator=gen, dtype=torch.float64).softmax(-1)
    v = torch.randn(batch, q, kv_heads, d, generator=gen, dtype=torch.float64)
    repeated = v.transpose(1, 2).repeat_interleave(rep, dim=1)  # b head k d, as repeat_kv
    want = (pattern @ repeated).transpose(1, 2)  # b q head d
    assert torch.allclose(pattern_times_values(pattern, v), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ["gemma3", "gpt2"])
def test_graph_with_patterns_at_z_equals_graph_with_frozen_patterns(tmp_path, monkeypatch, arch):
    model = tiny(arch, tmp_path)
    assert clean_run(model, tokenize(model, PROMPT)).z_from_pattern
    config = FeatureGraphConfig(max_feature_nodes=10_000, max_logits=2, batch_size=7, exclude_bos=False)
    at_z = build_neuron_graph(model, PROMPT, config=config)
    monkeypatch.setattr(replacement_mod, "z_is_pattern_times_values", lambda *a, **k: False)
    assert not clean_run(model, tokenize(model, PROMPT)).z_from_pattern
    at_pattern = build_neuron_graph(model, PROMPT, config=config)
    assert [n.node_id for n in at_z.nodes] == [n.node_id for n in at_pattern.nodes]
    assert torch.allclose(at_z.adjacency, at_pattern.adjacency, rtol=1e-9, atol=1e-12)
    assert at_z.adjacency.abs().max() > 1e-3
