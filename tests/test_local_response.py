"""The local-response error of a transcoder set (scrying.transcoders.local_response) against
ground truth and an independent computation, on tiny float64 models:

* a transcoder that *is* a ReLU MLP answers every change exactly as the MLP does (error 0), and so
  do ReLU neurons with their clean slope;
* a transcoder of zeros answers nothing (error 1);
* on a gated Gemma 3 MLP and a GELU GPT-2 MLP, each error equals one computed here from full
  per-row Jacobians (``torch.autograd.functional.jacobian`` of the HF module's own weights,
  written out), the transcoder's from its TopK mask written out, the frozen neurons' from the
  gate (or slope) held by hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scrying.errors import ConfigError, InvalidInputError
from scrying.transcoders import Transcoder, TranscoderSet, TranscoderSpec
from scrying.transcoders.local_response import (
    LocalResponseConfig,
    directions,
    local_response_report,
)
from tests.test_transcoder_graph import exact_set, random_set, relu_gpt2
from tests.tiny_models import tiny


def _windows(seed: int = 0) -> torch.Tensor:
    w = torch.randint(3, 20, (4, 9), generator=torch.Generator().manual_seed(seed))
    w[:, 0] = 1
    return w


@pytest.mark.parametrize("source", ["decoder", "data"])
def test_a_transcoder_that_is_the_mlp_responds_exactly(tmp_path, source):
    model, hf = relu_gpt2(tmp_path)
    report = local_response_report(model, exact_set(hf), _windows(), LocalResponseConfig(rows=20, directions=3, chunk=7, directions_from=source))
    assert len(report) == 3 and (report.rows == 20).all() and (report.directions == 3).all()
    measured = report if source == "data" else report.iloc[1:]
    if source == "decoder":  # layer 0 has no earlier features to move along
        assert report.iloc[0][["transcoder_error", "skip_only_error", "neuron_error"]].isna().all()
    assert measured.transcoder_error.max() < 1e-20  # float64: exact up to rounding
    assert measured.neuron_error.max() < 1e-20  # a ReLU's clean slope is its derivative
    assert (measured.skip_only_error == 1.0).all()  # no skip connection: it answers nothing


def test_a_transcoder_of_zeros_answers_nothing(tmp_path):
    model = tiny("gemma3", tmp_path)
    zeros = [Transcoder(TranscoderSpec(d_model=16, n_features=5, activation="topk", k=2, skip=True), dtype=torch.float64) for _ in range(3)]
    report = local_response_report(model, TranscoderSet(zeros, "zeros"), _windows(), LocalResponseConfig(rows=12, directions=2, directions_from="data"))
    assert (report.transcoder_error == 1.0).all() and (report.skip_only_error == 1.0).all()
    assert (report.neuron_error > 0).all() and (report.neuron_error < 1).all()  # a gated MLP's held gate answers part of it


def _reference(model, hf_mlp, tc: Transcoder, x: torch.Tensor, v: torch.Tensor, gated: bool) -> tuple[float, float, float]:
    """Transcoder, skip-only and frozen-neuron errors from full per-row Jacobians."""
    sums = torch.zeros(4, dtype=torch.float64)
    for xi, vi in zip(x, v, strict=True):
        jac = torch.autograd.functional.jacobian(lambda z: hf_mlp(z[None])[0], xi)  # [out in]
        real = vi @ jac.T
        pre = xi @ tc.W_enc.detach().T + tc.b_enc.detach()
        on = torch.zeros_like(pre, dtype=torch.bool)
        on[pre.topk(tc.spec.k).indices] = True
        on &= pre > 0
        j_tc = tc.W_dec.detach().T @ (on[:, None] * tc.W_enc.detach()) + tc.W_skip.detach()
        if gated:
            gate = hf_mlp.act_fn(hf_mlp.gate_proj(xi))
            j_n = hf_mlp.down_proj.weight @ (gate[:, None] * hf_mlp.up_proj.weight)
        else:  # GPT-2 Conv1D: weight [in out]
            p = xi @ hf_mlp.c_fc.weight + hf_mlp.c_fc.bias
            j_n = hf_mlp.c_proj.weight.T @ ((hf_mlp.act(p) / p)[:, None] * hf_mlp.c_fc.weight.T)
        sums += torch.stack([(real**2).sum(), ((real - vi @ j_tc.T) ** 2).sum(),
                             ((real - vi @ tc.W_skip.detach().T) ** 2).sum(), ((real - vi @ j_n.T) ** 2).sum()])
    return float(sums[1] / sums[0]), float(sums[2] / sums[0]), float(sums[3] / sums[0])


@pytest.mark.parametrize("arch", ["gemma3", "gpt2"])
def test_errors_equal_full_jacobians_written_out(tmp_path, arch):
    model = tiny(arch, tmp_path)
    tset = random_set(16, 3, seed=4, activation="topk", k=6)
    config = LocalResponseConfig(rows=10, directions=4, seed=3, chunk=3, directions_from="data")
    windows = _windows(1)
    report = local_response_report(model, tset, windows, config)
    from scrying.sites import recorded

    layer = 1
    site = tset.input_site(layer)
    with torch.no_grad(), recorded(model, [site]) as store:
        model(windows)
    x_all = store[site][:, 1:].flatten(0, 1)
    x = x_all[torch.linspace(0, len(x_all) - 1, 10).round().long()]
    v = directions(x, 4, seed=3 + layer)
    hf = model.original_model
    hf_mlp = hf.model.layers[layer].mlp if arch == "gemma3" else hf.transformer.h[layer].mlp
    want = _reference(model, hf_mlp, tset.transcoders[layer], x, v, gated=arch == "gemma3")
    got = report.loc[layer, ["transcoder_error", "skip_only_error", "neuron_error"]].tolist()
    assert got == pytest.approx(want, rel=1e-9)
    alone = local_response_report(model, tset, windows, dataclasses.replace(config, layers=(layer,)))
    assert alone.layer.tolist() == [layer] and alone.iloc[0].tolist() == report.loc[layer].tolist()  # one layer, the same rows
    assert 0 < want[0] and 0 < want[2] < 1


def test_directions_are_unit_differences_of_rows():
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[3] = x[0]  # a zero difference stays zero, no division by 0
    v = directions(x, 4, seed=1)
    norms = v.norm(dim=-1)
    assert ((norms - 1).abs() < 1e-12).logical_or(norms == 0).all()
    other = torch.randint(0, 6, (6, 4), generator=torch.Generator().manual_seed(1))
    diff = x[other] - x[:, None]
    assert torch.allclose(v * diff.norm(dim=-1, keepdim=True), diff)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ConfigError, match="LocalResponseConfig.rows must be >= 1"):
        LocalResponseConfig(rows=0)
    with pytest.raises(ConfigError, match="directions_from must be 'decoder' or 'data', got 'noise'"):
        LocalResponseConfig(directions_from="noise")
    model = tiny("gemma3", tmp_path)
    with pytest.raises(InvalidInputError, match="transcoder set has 2 layers, the model 3"):
        local_response_report(model, random_set(16, 2, seed=0), _windows())
    with pytest.raises(InvalidInputError, match=r"LocalResponseConfig.layers must be in 0..2, got \(3,\)"):
        local_response_report(model, random_set(16, 3, seed=0), _windows(), LocalResponseConfig(layers=(3,)))
    other = dataclasses.replace(random_set(16, 3, seed=0), output_hook="hook_mlp_out")
    with pytest.raises(InvalidInputError, match="must read mlp.hook_in and write mlp.hook_out; this one reads mlp.hook_in and writes hook_mlp_out"):
        local_response_report(model, other, _windows())
    with pytest.raises(InvalidInputError, match=r"windows must be \[batch seq\] with seq >= 2"):
        local_response_report(model, random_set(16, 3, seed=0), _windows()[:, :1])


def test_decoder_directions_are_earlier_active_features_through_the_frozen_norm(tmp_path):
    """Each decoder direction of a Gemma 3 layer is, up to length, ``(1 + w) * W_dec[f]`` (its
    RMSNorm with the scale frozen) for a feature ``f`` active on that row at an earlier layer; the
    errors on them equal full Jacobians written out."""
    from scrying.sites import Component, Site, recorded
    from scrying.transcoders.local_response import active_masks, decoder_directions

    model = tiny("gemma3", tmp_path)
    tset = random_set(16, 3, seed=5, activation="topk", k=4)
    windows = _windows(2)
    layer = 2
    sites = [tset.input_site(ly) for ly in range(3)] + [Site(Component.LN2_IN, layer)]
    with torch.no_grad(), recorded(model, sites) as store:
        model(windows)
    pick = torch.linspace(0, 4 * 8 - 1, 10).round().long()
    inputs = [store[site][:, 1:].flatten(0, 1)[pick] for site in sites]
    v = decoder_directions(model, tset, layer, active_masks(tset, inputs[:layer]), inputs[3], 5, seed=7 + layer)
    weight = 1 + model.original_model.model.layers[layer].pre_feedforward_layernorm.weight.detach()
    for r in range(10):
        candidates = []
        for up in range(layer):
            tc = tset.transcoders[up]
            on = tc.mask(tc.pre_activations(inputs[up][r])).bool()
            candidates += [weight * tc.W_dec.detach()[f] for f in on.nonzero().flatten().tolist()]
        cand = torch.stack(candidates)
        cand = cand / cand.norm(dim=-1, keepdim=True)
        assert torch.allclose((v[r] @ cand.T).max(dim=-1).values, torch.ones(5, dtype=v.dtype), atol=1e-12)
    report = local_response_report(model, tset, windows, LocalResponseConfig(rows=10, directions=5, seed=7, chunk=4))
    want = _reference(model, model.original_model.model.layers[layer].mlp, tset.transcoders[layer], inputs[layer], v, gated=True)
    assert report.loc[layer, ["transcoder_error", "skip_only_error", "neuron_error"]].tolist() == pytest.approx(want, rel=1e-9)
    assert report.iloc[0].isna()["transcoder_error"] and not report.iloc[1:].isna().any().any()


def test_the_report_command_adds_the_response_columns(tmp_path, monkeypatch, capsys):
    """``scrying transcoders report DIR --response`` prints the quality report with each layer's
    local-response errors, the same numbers ``local_response_report`` gives on those windows."""
    from scrying.cli import transcoders as cli
    from scrying.cli.main import main
    from scrying.transcoders import write_transcoders
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.train import first_windows

    model = tiny("gemma3", tmp_path)
    tset = random_set(16, 3, seed=6, activation="topk", k=4)
    write_transcoders(tset, tmp_path / "set")
    text = tmp_path / "t.txt"
    text.write_text(" ".join(["a b c d e f g h"] * 40), encoding="utf-8")
    monkeypatch.setattr(cli, "model_from_args", lambda args: model)
    args = ["transcoders", "report", str(tmp_path / "set"), "--text", str(text), "--windows", "4", "--seq-len", "12", "--splice-windows", "0"]
    assert main(args) == 0
    assert "response_error" not in capsys.readouterr().out
    assert main([*args, "--response"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[-3:] == ["response_error", "response_skip_only", "response_neurons"]
    windows = first_windows(model, read_texts([text]), 12, 4, what="t")
    want = local_response_report(model, tset, windows)
    for line, (_, row) in zip(lines[1:], want.iterrows(), strict=True):
        got = [float(g) for g in line.split()[-3:]]
        expected = [row[c] for c in ("transcoder_error", "skip_only_error", "neuron_error")]
        assert got == pytest.approx(expected, rel=1e-5, nan_ok=True)  # as printed (6 significant digits)
    assert want.transcoder_error.isna().tolist() == [True, False, False]  # decoder directions: none at layer 0
