"""The compact active-feature machinery against dense references.

* :class:`ActiveSet`: compact order, lookup, positions and per-position sums equal the dense
  tensor's, for a full set and for a sparse one (and an absent feature is refused by name).
* :mod:`scrying.transcoders.active`: ``encode_active`` and ``decode_active`` and both their
  gradients equal the dense matrix products restricted to the active entries, with positions of
  unequal counts (ReLU-like) and with the chunking forced to split positions.
"""

from __future__ import annotations

import pytest
import torch

from scrying.attribution.basis import ActiveSet
from scrying.errors import InvalidInputError
from scrying.transcoders import active as active_mod
from scrying.transcoders.active import ActiveRows, decode_active, encode_active


def _mask(n_pos: int, width: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_pos, width, generator=gen) < 0.3
    mask[2] = False  # a position with nothing active
    mask[0, :] = True  # and one with every feature active
    return mask


def test_sparse_active_set_is_the_dense_tensor_at_its_entries():
    mask = _mask(5, 7, 0)
    dense = torch.randn(3, 5, 7, dtype=torch.float64) * mask
    active = ActiveSet(5, 7, torch.nonzero(mask))
    compact = active.compact(dense)
    assert len(active) == int(mask.sum()) == compact.shape[-1]
    pos, index = active.coords_of(torch.arange(len(active)))
    assert torch.equal(compact, dense[:, pos, index])
    assert torch.equal(active.pos, pos)
    assert torch.equal(active.lookup(pos.flip(0), index.flip(0)), torch.arange(len(active)).flip(0))
    assert torch.allclose(active.position_sums(compact), dense.sum(-1))
    off = torch.nonzero(~mask)[0]
    with pytest.raises(InvalidInputError, match="not active"):
        active.lookup(off[:1], off[1:])


def test_full_active_set_is_the_flattened_tensor():
    dense = torch.randn(2, 4, 6, dtype=torch.float64)
    active = ActiveSet(4, 6)
    assert len(active) == 24 and torch.equal(active.compact(dense), dense.flatten(-2))
    k = torch.tensor([0, 7, 23])
    pos, index = active.coords_of(k)
    assert pos.tolist() == [0, 1, 3] and index.tolist() == [0, 1, 5]
    assert torch.equal(active.lookup(pos, index), k)
    assert torch.allclose(active.position_sums(dense.flatten(-2)), dense.sum(-1))


@pytest.mark.parametrize(
    ("chunk_elements", "keep_elements"),
    [(1 << 23, 1 << 21), (1 << 23, 0), (40, 0)],  # kept rows; one chunk built per call; a position per chunk
)
def test_active_encode_and_decode_are_the_dense_products(monkeypatch, chunk_elements, keep_elements):
    monkeypatch.setattr(active_mod, "CHUNK_ELEMENTS", chunk_elements)
    monkeypatch.setattr(active_mod, "KEEP_ELEMENTS", keep_elements)
    gen = torch.Generator().manual_seed(1)
    batch, n_pos, width, d = 3, 6, 9, 4
    mask = _mask(n_pos, width, 2)
    coords = torch.nonzero(mask)
    pos, index = coords[:, 0], coords[:, 1]
    W_enc = torch.randn(width, d, generator=gen, dtype=torch.float64)
    b_enc = torch.randn(width, generator=gen, dtype=torch.float64)
    W_dec = torch.randn(width, d, generator=gen, dtype=torch.float64)
    x = torch.randn(batch, n_pos, d, generator=gen, dtype=torch.float64, requires_grad=True)

    acts = encode_active(x, ActiveRows(W_enc, pos, index, n_pos), b_enc)
    dense_pre = x @ W_enc.T + b_enc
    assert torch.allclose(acts, dense_pre[:, pos, index], rtol=0, atol=1e-12)

    values = torch.randn(batch, len(pos), generator=gen, dtype=torch.float64, requires_grad=True)
    out = decode_active(values, ActiveRows(W_dec, pos, index, n_pos))
    scattered = torch.zeros(batch, n_pos, width, dtype=torch.float64)
    scattered[:, pos, index] = values.detach()
    assert torch.allclose(out, scattered @ W_dec, rtol=0, atol=1e-12)

    # Gradients: the transposed products, at the active entries only.
    g_out = torch.randn(batch, n_pos, d, generator=gen, dtype=torch.float64)
    (grad_values,) = torch.autograd.grad(out, values, g_out)
    assert torch.allclose(grad_values, (g_out @ W_dec.T)[:, pos, index], rtol=0, atol=1e-12)
    g_acts = torch.randn(batch, len(pos), generator=gen, dtype=torch.float64)
    (grad_x,) = torch.autograd.grad(acts, x, g_acts)
    dense_grad = torch.zeros(batch, n_pos, width, dtype=torch.float64)
    dense_grad[:, pos, index] = g_acts
    assert torch.allclose(grad_x, dense_grad @ W_enc, rtol=0, atol=1e-12)
