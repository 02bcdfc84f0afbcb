"""The training recipe's parts against hand computations: AuxK's loss written out and its effect
(a planted dead feature comes back; without AuxK it stays dead), the sparse TopK decode equal to
the dense one, the learning-rate schedule's values, the atomic checkpoint (a crash between
writing and renaming leaves the previous checkpoint, and the resumed run ends on the same floats
as an uninterrupted one), the spliced-in loss and KL against a hook written here, and rare
features counted apart from dead ones."""

from __future__ import annotations

import math
import random

import pytest
import torch

from scrying.transcoders import train_checkpoint
from scrying.transcoders.files import TranscoderSet
from scrying.transcoders.quality import quality_report, spliced_loss
from scrying.transcoders.train import train_transcoders
from scrying.transcoders.train_config import TranscoderTrainConfig
from scrying.transcoders.train_loss import auxk_loss, dead_mask, layer_loss, lr_at
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec
from tests.tiny_models import tiny


def _random_tc(d=6, f=10, k=3, seed=0, skip=True) -> Transcoder:
    gen = torch.Generator().manual_seed(seed)
    tc = Transcoder(TranscoderSpec(d_model=d, n_features=f, activation="topk", k=k, skip=skip), dtype=torch.float64)
    with torch.no_grad():
        for p in tc.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    return tc


def test_auxk_loss_equals_a_hand_computation():
    tc = _random_tc()
    gen = torch.Generator().manual_seed(1)
    x, err = torch.randn(5, 6, generator=gen, dtype=torch.float64), torch.randn(5, 6, generator=gen, dtype=torch.float64)
    pre = tc.pre_activations(x)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[1, 4, 7, 8]] = True
    expected_num = 0.0
    for r in range(5):
        ranked = sorted([1, 4, 7, 8], key=lambda i: -float(pre[r, i].detach()))[:2]
        e_hat = sum(max(float(pre[r, i].detach()), 0.0) * tc.W_dec[i].detach() for i in ranked)
        expected_num += float((e_hat - err[r]).pow(2).sum())
    denom = float((err - err.mean(0)).pow(2).sum()) / 5
    assert float(auxk_loss(tc, x, pre, err, dead, k_aux=2).detach()) == pytest.approx(expected_num / 5 / denom, rel=1e-12)
    assert float(auxk_loss(tc, x, pre, err, torch.zeros(10, dtype=torch.bool), k_aux=2).detach()) == 0.0


def _dense_reference(tc: Transcoder, x, y, dead, k_aux: int, aux_coef: float):
    """The loss written plainly (the reference): dense pre-activations under autograd, the TopK,
    and AuxK's ranking over every feature with the live ones masked out."""
    pre = tc.pre_activations(x)
    values, indices = pre.topk(tc.spec.k, dim=-1)
    y_hat = torch.relu(values).unsqueeze(-1).mul(tc.W_dec[indices]).sum(1) + tc.b_dec + x @ tc.W_skip.T
    loss = (y_hat - y).pow(2).sum(-1).mean()
    err = (y - y_hat).detach()
    aux_values, aux_indices = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1)
    e_hat = torch.relu(aux_values).unsqueeze(-1).mul(tc.W_dec[aux_indices]).sum(1)
    return loss + aux_coef * (e_hat - err).pow(2).sum(-1).mean() / (err - err.mean(0)).pow(2).sum(-1).mean()


def test_auxk_gradient_equals_the_masked_ranking():
    """The dead columns' own ranking, with the sparse encoder gradient, gives the loss and the
    gradients of the ranking over every feature with the live ones masked out, under dense autograd."""
    tc = _random_tc(f=10, seed=5)
    gen = torch.Generator().manual_seed(6)
    x, err = torch.randn(7, 6, generator=gen, dtype=torch.float64), torch.randn(7, 6, generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[0, 3, 4, 9]] = True
    with torch.no_grad():
        pre = tc.pre_activations(x)
    got = auxk_loss(tc, x, pre, err, dead, k_aux=3)
    grads = torch.autograd.grad(got, [tc.W_enc, tc.b_enc, tc.W_dec, x])
    ref_pre = tc.pre_activations(x)
    values, indices = ref_pre.masked_fill(~dead, float("-inf")).topk(3, dim=-1)
    e_hat = torch.relu(values).unsqueeze(-1).mul(tc.W_dec[indices]).sum(1)
    want = (e_hat - err).pow(2).sum(-1).mean() / (err - err.mean(0)).pow(2).sum(-1).mean()
    ref_grads = torch.autograd.grad(want, [tc.W_enc, tc.b_enc, tc.W_dec, x])
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert torch.allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)
    assert grads[0][~dead].abs().max() == 0 and grads[0][dead].abs().max() > 0  # only dead rows learn


def test_layer_loss_gradients_equal_dense_autograd():
    """The sparse encoder gradient (only the TopK and AuxK picks' pre-activations under autograd)
    against the loss written densely: every weight's gradient, with and without dead features."""
    tc = _random_tc(d=6, f=12, k=3, seed=8)
    gen = torch.Generator().manual_seed(9)
    x, y = torch.randn(9, 6, generator=gen, dtype=torch.float64), torch.randn(9, 6, generator=gen, dtype=torch.float64)
    for dead_features in ([], [1, 5, 6, 10]):
        dead = torch.zeros(12, dtype=torch.bool)
        dead[dead_features] = True
        part = layer_loss(tc, x, y, dead=dead, k_aux=2, aux_coef=0.25, l1=0.0)
        names = [name for name, _ in tc.named_parameters()]
        grads = torch.autograd.grad(part.total, list(tc.parameters()))
        want = _dense_reference(tc, x, y, dead, 2, 0.25 if dead_features else 0.0)
        ref_grads = torch.autograd.grad(want, list(tc.parameters()))
        assert float(part.total.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
        for name, grad, ref_grad in zip(names, grads, ref_grads, strict=True):
            assert torch.allclose(grad, ref_grad, rtol=1e-10, atol=1e-13), name
        assert grads[0].abs().max() > 0


def test_sparse_decode_equals_the_dense_transcoder():
    tc = _random_tc(seed=3)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(7, 6, generator=gen, dtype=torch.float64), torch.randn(7, 6, generator=gen, dtype=torch.float64)
    part = layer_loss(tc, x, y, dead=None, k_aux=4, aux_coef=0.0, l1=0.0)
    assert part.mse == pytest.approx(float((tc(x) - y).pow(2).sum(-1).mean().detach()), rel=1e-12)
    assert torch.equal(part.fired, (tc.encode(x) != 0).any(0))


def _planted(aux_coef: float) -> tuple[bool, bool, Transcoder]:
    """Five orthogonal input clusters with five outputs, TopK k=1. Feature 1 reads clusters 0, 1
    and 2 alike (one output for three clusters: an error it cannot remove); feature 0 reads
    cluster 0 weakly, so feature 1 always wins the top-1 and feature 0 never fires: dead. Returns
    (fired at some step, fires at the end, the transcoder)."""
    d, f = 5, 4
    tc = Transcoder(TranscoderSpec(d_model=d, n_features=f, activation="topk", k=1), dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    with torch.no_grad():
        tc.W_enc[0], tc.W_enc[1], tc.W_enc[2], tc.W_enc[3] = 0.05 * eye[0], eye[0] + eye[1] + eye[2], eye[3], eye[4]
        tc.W_dec.copy_(0.1 * torch.randn(f, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
        tc.W_dec[0] = 0.0
    gen = torch.Generator().manual_seed(5)
    outputs = torch.randn(d, d, generator=gen, dtype=torch.float64)
    opt = torch.optim.Adam(tc.parameters(), lr=0.01)
    since = torch.zeros(f, dtype=torch.long)
    ever = False
    for _ in range(300):
        cluster = torch.randint(0, d, (64,), generator=gen)
        x = eye[cluster] * (1 + 0.1 * torch.rand(64, 1, generator=gen, dtype=torch.float64))
        part = layer_loss(tc, x, outputs[cluster], dead=dead_mask(since, 128), k_aux=2, aux_coef=aux_coef, l1=0.0)
        since = torch.where(part.fired, 0, since + 64)
        ever |= bool(part.fired[0])
        opt.zero_grad()
        part.total.backward()
        opt.step()
    return ever, bool(part.fired[0]), tc


def test_auxk_revives_a_planted_dead_feature():
    ever, at_end, _ = _planted(aux_coef=1 / 32)
    assert ever and at_end
    ever, at_end, tc = _planted(aux_coef=0.0)
    assert not ever and not at_end
    assert torch.equal(tc.W_enc[0].detach(), 0.05 * torch.eye(5, dtype=torch.float64)[0])  # no gradient ever reached it


def test_schedule_values():
    lr, total, warm = 1e-3, 110, 10
    values = [lr_at(s, total, lr, warm, 0.1) for s in range(total)]
    assert values[0] == pytest.approx(lr / 10) and values[4] == pytest.approx(lr / 2) and values[9] == pytest.approx(lr)
    assert values[10] == pytest.approx(lr) and values[-1] == pytest.approx(0.1 * lr)
    mid = 10 + (total - 10 - 1) / 2  # halfway through the decay: the mean of the two ends
    assert lr_at(int(mid), total, lr, warm, 0.1) == pytest.approx(lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 99))))
    assert lr_at(59, 109, lr, warm, 0.1) == pytest.approx(0.55 * lr)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert all(lr_at(s, 50, lr, 0, 1.0) == lr for s in range(50))  # the old constant rate


CONFIG = TranscoderTrainConfig(n_features=32, activation="topk", k=4, lr=3e-3, batch_size=128, seq_len=16, chunk_tokens=1024,
                               total_tokens=3072, eval_tokens=256, epochs=2, warmup_steps=3, final_lr_fraction=0.1,
                               aux_coef=1 / 32, k_aux=8, dead_after=512, splice_tokens=64, rare_every=50)


def texts():
    rng = random.Random(0)
    for _ in range(200):
        yield " ".join(f"t{rng.randrange(16)}" for _ in range(40))


def heldout():
    rng = random.Random(9)
    for _ in range(20):
        yield " ".join(f"t{rng.randrange(16)}" for _ in range(40))


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny("gpt2", tmp_path_factory.mktemp("tiny"))


def test_a_crash_between_writes_resumes_to_the_same_floats(model, tmp_path, monkeypatch):
    full = train_transcoders(model, texts, tmp_path / "full", CONFIG, eval_texts=heldout)
    assert len(full.history) == 3 and any(a > 0 for h in full.history for a in h["aux"])  # AuxK was at work
    replace, saves = train_checkpoint.os.replace, []

    def crash_on_second(src, dst):
        saves.append(src)
        if len(saves) == 2:  # the second chunk's file is written, not yet renamed: the process dies
            raise Crash
        replace(src, dst)

    monkeypatch.setattr(train_checkpoint.os, "replace", crash_on_second)
    with pytest.raises(Crash):
        train_transcoders(model, texts, tmp_path / "run", CONFIG, eval_texts=heldout)
    monkeypatch.setattr(train_checkpoint.os, "replace", replace)
    ckpt = tmp_path / "run" / "checkpoint"
    assert (ckpt / "state.safetensors.tmp").is_file()
    settings_probe = train_checkpoint.load_checkpoint(ckpt, {})
    assert settings_probe is not None and settings_probe[1]["chunks_done"] == 1  # weights and progress of chunk 1 together
    resumed = train_transcoders(model, texts, tmp_path / "run", CONFIG, eval_texts=heldout)
    assert resumed.chunks_trained == 2
    for a, b in zip(full.transcoders.transcoders, resumed.transcoders.transcoders, strict=True):
        for name, tensor in a.tensors().items():
            assert torch.equal(tensor, b.tensors()[name]), name
    for key in ("mse", "aux", "dead_fraction"):  # the first chunk's from the checkpoint, the rest recomputed: same floats
        assert [h[key] for h in resumed.history] == [h[key] for h in full.history], key
    assert {"rare_fraction", "ce_increase", "kl"} <= set(full.report.columns)


def _hand_spliced(model, tset: TranscoderSet, layer: int, windows: torch.Tensor) -> tuple[float, float, float]:
    """CE clean, CE spliced and KL with a hook written here (raw hook names, explicit formula)."""
    tc = {k: v.detach() for k, v in tset.transcoders[layer].tensors().items()}
    seen = {}

    def keep(act, hook):
        seen["x"] = act.detach().clone()

    def replace(act, hook):
        x = seen["x"][:, 1:]
        acts = torch.relu(x @ tc["W_enc"].T + tc["b_enc"])
        out = act.clone()
        out[:, 1:] = acts @ tc["W_dec"] + tc["b_dec"] + x @ tc["W_skip"].T
        return out

    with torch.no_grad():
        clean = model(windows)
        with model.hooks(fwd_hooks=[(f"blocks.{layer}.mlp.hook_in", keep), (f"blocks.{layer}.mlp.hook_out", replace)]):
            spliced = model(windows)
    v = clean.shape[-1]
    target = windows[:, 1:].reshape(-1)
    lc, ls = clean[:, :-1].reshape(-1, v).double(), spliced[:, :-1].reshape(-1, v).double()
    ce_c = float(torch.nn.functional.cross_entropy(lc, target))
    ce_s = float(torch.nn.functional.cross_entropy(ls, target))
    kl = float(torch.nn.functional.kl_div(ls.log_softmax(-1), lc.log_softmax(-1), log_target=True, reduction="batchmean"))
    return ce_c, ce_s, kl


def test_spliced_loss_equals_a_hand_hook(model):
    from tests.test_transcoder_graph import random_set

    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=11)
    windows = torch.randint(3, 20, (5, 9), generator=torch.Generator().manual_seed(2))
    windows[:, 0] = 1
    table = spliced_loss(model, tset, windows, batch=2)
    for layer in range(model.cfg.n_layers):
        ce_c, ce_s, kl = _hand_spliced(model, tset, layer, windows)
        row = table.iloc[layer]
        assert row.ce_clean == pytest.approx(ce_c, rel=1e-9) and row.ce_spliced == pytest.approx(ce_s, rel=1e-9)
        assert row.ce_increase == pytest.approx(ce_s - ce_c, rel=1e-6, abs=1e-12) and row.kl == pytest.approx(kl, rel=1e-8)
        assert kl > 1e-6  # a random set changes the prediction


def test_rare_features_are_counted_apart_from_dead_ones(model):
    from scrying.sites import Component, Site, recorded
    from tests.test_transcoder_graph import random_set

    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=11)
    windows = torch.randint(3, 20, (20, 9), generator=torch.Generator().manual_seed(2))
    windows[:, 0] = 1
    with torch.no_grad(), recorded(model, [Site(Component.MLP_IN, 0)]) as store:
        model(windows)
    x = store[Site(Component.MLP_IN, 0)][:, 1:].reshape(-1, model.cfg.d_model).double()  # 160 rows
    tc = tset.transcoders[0]
    with torch.no_grad():
        tc.b_enc[:] = -1e6  # all dead ...
        for f, rows in ((0, 1), (1, 1), (2, 2), (3, 5)):  # ... but these fire on exactly `rows` rows
            top = (x @ tc.W_enc[f].detach()).topk(rows + 1).values
            tc.b_enc[f] = -(top[-2] + top[-1]) / 2
    report = quality_report(model, tset, windows, batch=8, rare_every=100)  # rare: < 1.6 rows of 160
    n = tc.spec.n_features
    assert report.loc[0, "rare_fraction"] == pytest.approx(2 / n) and report.loc[0, "dead_fraction"] == pytest.approx((n - 4) / n)
