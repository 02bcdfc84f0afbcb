"""Transcoder files: our writer and reader round-trip, and circuit-tracer's layouts read right."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import save_file

from scrying.errors import InvalidInputError
from scrying.transcoders import (
    Transcoder,
    TranscoderSet,
    TranscoderSpec,
    check_transcoders,
    read_transcoders,
    write_transcoders,
)


def _random(spec: TranscoderSpec, seed: int) -> Transcoder:
    gen = torch.Generator().manual_seed(seed)
    tc = Transcoder(spec)
    return tc.load_tensors({k: torch.randn(v.shape, generator=gen) for k, v in tc.tensors().items()})


@pytest.mark.parametrize("activation,k,skip", [("topk", 3, True), ("relu", None, False), ("jumprelu", None, True)])
def test_write_then_read_is_equal(tmp_path, activation, k, skip):
    spec = TranscoderSpec(d_model=6, n_features=10, activation=activation, k=k, skip=skip)
    tset = TranscoderSet([_random(spec, s) for s in range(3)], "tiny", "mlp.hook_in", "mlp.hook_out")
    back = read_transcoders(write_transcoders(tset, tmp_path / "tc"))
    assert back.model_name == "tiny" and back.input_hook == "mlp.hook_in" and back.output_hook == "mlp.hook_out"
    x = torch.randn(5, 6)
    for a, b in zip(tset.transcoders, back.transcoders, strict=True):
        assert b.spec == a.spec
        assert a.tensors().keys() == b.tensors().keys()
        assert all(torch.equal(a.tensors()[n], b.tensors()[n]) for n in a.tensors())
        assert torch.equal(a(x), b(x))


def test_a_hand_made_circuit_tracer_directory_is_read(tmp_path):
    """circuit-tracer's current layout (W_enc and W_dec feature x d_model, threshold as
    ``activation_function.threshold``, ``transcoders`` a list of paths) and its older one
    ({id, layer, filepath} entries; W_dec stored d_model x feature), checked against the
    transcoder written out by hand: relu(x W_enc^T + b_enc) masked at the threshold, decoded."""
    gen = torch.Generator().manual_seed(0)
    d, f = 4, 7
    w_enc, w_dec = torch.randn(f, d, generator=gen), torch.randn(f, d, generator=gen)
    b_enc, b_dec, thr = torch.randn(f, generator=gen), torch.randn(d, generator=gen), torch.rand(f, generator=gen)
    w_skip = torch.randn(d, d, generator=gen)
    x = torch.randn(9, d, generator=gen)
    pre = x @ w_enc.T + b_enc
    want = (pre * (pre > thr)) @ w_dec + b_dec + x @ w_skip.T

    new = tmp_path / "new"
    new.mkdir()
    save_file({"W_enc": w_enc, "W_dec": w_dec, "b_enc": b_enc, "b_dec": b_dec, "W_skip": w_skip,
               "activation_function.threshold": thr}, str(new / "layer_0.safetensors"))
    (new / "config.yaml").write_text(yaml.safe_dump({"model_name": "m", "model_kind": "transcoder_set",
        "feature_input_hook": "mlp.hook_in", "feature_output_hook": "mlp.hook_out", "transcoders": ["layer_0.safetensors"]}))
    check_transcoders(new)  # both of circuit-tracer's layouts pass the pre-flight
    tset = read_transcoders(new)
    assert tset.transcoders[0].spec == TranscoderSpec(d_model=d, n_features=f, activation="jumprelu", skip=True)
    assert torch.allclose(tset.transcoders[0](x), want, atol=1e-5)

    old = tmp_path / "old"
    old.mkdir()
    save_file({"W_enc": w_enc, "W_dec": w_dec.T.contiguous(), "b_enc": b_enc, "b_dec": b_dec, "W_skip": w_skip,
               "threshold": thr}, str(old / "l0.safetensors"))
    (old / "config.yaml").write_text(yaml.safe_dump({"model_name": "m", "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out", "transcoders": [{"id": "a", "layer": 0, "filepath": str(old / "l0.safetensors")}]}))
    check_transcoders(old)
    assert torch.allclose(read_transcoders(old).transcoders[0](x), want, atol=1e-5)


def test_bad_directories_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="no transcoder config"):
        read_transcoders(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out", "transcoders": ["hf://org/repo/layer_0.safetensors"]}))
    with pytest.raises(InvalidInputError, match="hub address"):
        read_transcoders(tmp_path)
    with pytest.raises(InvalidInputError, match="hub address"):
        check_transcoders(tmp_path)
    save_file({"W_enc": torch.zeros(3, 2), "W_dec": torch.zeros(5, 2), "b_enc": torch.zeros(3), "b_dec": torch.zeros(2)},
              str(tmp_path / "layer_0.safetensors"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out", "transcoders": ["layer_0.safetensors"]}))
    with pytest.raises(InvalidInputError, match="W_dec has shape"):
        read_transcoders(tmp_path)
