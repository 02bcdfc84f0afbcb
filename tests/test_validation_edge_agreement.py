"""The scrying/circuit-tracer edge agreement of ``benchmarks/vs_circuit_tracer.py``: a zero floor
per edge kind, on constructed edge lists (circuit-tracer itself is not needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "vs_circuit_tracer.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("vs_circuit_tracer", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_zero_floor_is_per_edge_kind():
    """A token -> logit edge of 10 beside feature edges of ~1e-3: with one floor (1e-6 x 10 =
    1e-5) a feature edge pair (2e-6, 9e-6), 4.5x apart, would pass as 'zero up to rounding', and
    a pair relative 2e-4 apart would pass under the floor; with their kind's floor (1e-6 x 1e-3)
    both disagree."""
    agreement = _benchmark().edge_agreement
    a = torch.tensor([10.0, 1e-3, 2e-6, 5e-10, 3e-4], dtype=torch.float64)
    b = torch.tensor([10.0 + 5e-4, 1e-3, 9e-6, -5e-10, 3e-4 * (1 + 2e-4)], dtype=torch.float64)
    kinds = torch.tensor([3, 0, 0, 0, 0])
    ok, nonzero = agreement(a, b, kinds, rtol=1e-4, floor=1e-6)
    assert ok.tolist() == [True, True, False, True, False]
    assert nonzero.tolist() == [True, True, True, False, True]
    # one kind for all: the floor is the token -> logit edge's (1e-5), so the small pair passes as
    # zero and the last pair (relative 2e-4 apart) passes under the floor
    ok_one, nonzero_one = agreement(a, b, torch.zeros(5, dtype=torch.long), rtol=1e-4, floor=1e-6)
    assert ok_one.tolist() == [True, True, True, True, True]
    assert nonzero_one.tolist() == [True, True, False, False, True]


def test_edges_of_no_kind_and_empty_kinds():
    agreement = _benchmark().edge_agreement
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    ok, nonzero = agreement(a, a.clone(), torch.tensor([[0, 1], [-1, 1]]))
    assert ok.all() and nonzero.tolist() == [[True, False], [False, False]]  # an all-zero kind has no nonzero edge
