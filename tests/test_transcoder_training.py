"""Training transcoders offline on a tiny GPT-2: the error falls below a stated bound, the report's
figures match an independent computation, and a killed run resumes to the same weights.

Measured (2026-11-29, this machine): TopK k=4, 32 features, 8,192 tokens in 4 chunks gives
held-out FVU 0.096 / 0.095 / 0.116 on the three layers (1.0 before training: predicting the
mean); the bound asserted is 0.2.
"""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from scrying.errors import InvalidInputError
from scrying.sites import Component, Site, recorded
from scrying.transcoders import read_transcoders
from scrying.transcoders.train import (
    export_checkpoint,
    token_windows,
    train_transcoders,
)
from scrying.transcoders.train_config import TranscoderTrainConfig
from tests.tiny_models import tiny

CONFIG = TranscoderTrainConfig(n_features=32, activation="topk", k=4, lr=3e-3, batch_size=128, seq_len=16,
                               chunk_tokens=2048, total_tokens=8192, eval_tokens=512)
FVU_BOUND = 0.2


def texts():
    rng = random.Random(0)
    for _ in range(400):
        yield " ".join(f"t{rng.randrange(16)}" for _ in range(40))


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny("gpt2", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def full(model, tmp_path_factory):
    return train_transcoders(model, texts, tmp_path_factory.mktemp("full"), CONFIG)


def test_training_explains_the_mlp_output(model, full):
    assert full.chunks_trained == CONFIG.n_chunks == 4
    assert (full.report["fvu"] < FVU_BOUND).all(), full.report
    assert (full.report["l0"] <= 4).all() and (full.report["l0"] > 3).all()
    first, last = full.history[0]["mse"], full.history[-1]["mse"]
    assert all(b < a / 3 for a, b in zip(first, last, strict=True))


def test_report_figures_equal_an_independent_computation(model, full):
    """FVU and L0 of layer 2 recomputed from the held-out windows with torch.var."""
    windows = torch.stack([w for _, w in zip(range(CONFIG.n_eval_windows), token_windows(model, texts(), CONFIG.seq_len), strict=False)])
    with recorded(model, [Site(Component.MLP_IN, 2), Site(Component.MLP_RESULT, 2)]) as store:
        model(windows)
    x = store[Site(Component.MLP_IN, 2)][:, 1:].reshape(-1, 16).float()
    y = store[Site(Component.MLP_RESULT, 2)][:, 1:].reshape(-1, 16).double()
    tc = full.transcoders.transcoders[2]
    with torch.no_grad():
        err = (tc(x).double() - y).pow(2).sum()
        l0 = (tc.encode(x) != 0).sum(-1).double().mean()
    fvu = err / (y.var(0, unbiased=False).sum() * y.shape[0])
    assert float(full.report.loc[2, "fvu"]) == pytest.approx(float(fvu), rel=1e-6)
    assert float(full.report.loc[2, "l0"]) == pytest.approx(float(l0), rel=1e-9)


def test_a_killed_run_resumes_to_the_same_weights(model, full, tmp_path):
    def kill(chunk: int) -> None:
        if chunk == 1:
            raise Killed

    with pytest.raises(Killed):
        train_transcoders(model, texts, tmp_path, CONFIG, on_chunk=kill)
    resumed = train_transcoders(model, texts, tmp_path, CONFIG)
    assert resumed.chunks_trained == 2  # chunks 2 and 3 only
    for a, b in zip(full.transcoders.transcoders, resumed.transcoders.transcoders, strict=True):
        for name, tensor in a.tensors().items():
            assert torch.equal(tensor, b.tensors()[name]), name
    with pytest.raises(InvalidInputError, match="other settings"):
        train_transcoders(model, texts, tmp_path, TranscoderTrainConfig(**{**CONFIG.__dict__, "lr": 1e-3}))


def test_export_writes_the_set_at_the_checkpoint(model, full, tmp_path):
    """A finished run's checkpoint exports to the set it wrote; a run killed after 2 of 4 chunks
    exports to the set a 2-chunk run writes (CONFIG's learning rate is constant, so the first two
    chunks are the same steps), with snapshot.json saying how far it got."""
    exported, snap = export_checkpoint(full.directory, tmp_path / "finished")
    assert (snap["chunks_done"], snap["n_chunks"]) == (4, 4)
    _assert_same_weights(full.transcoders, read_transcoders(tmp_path / "finished"))

    def kill(chunk: int) -> None:
        if chunk == 1:
            raise Killed

    with pytest.raises(Killed):
        train_transcoders(model, texts, tmp_path / "run", CONFIG, on_chunk=kill)
    _, snap = export_checkpoint(tmp_path / "run", tmp_path / "half")
    assert (snap["chunks_done"], snap["n_chunks"], snap["steps_done"], snap["total_steps"]) == (2, 4, 2 * CONFIG.steps_per_chunk, CONFIG.all_steps)
    assert json.loads((tmp_path / "half" / "snapshot.json").read_text())["tokens_done"] == 2 * CONFIG.chunk_tokens
    two_chunks = train_transcoders(model, texts, tmp_path / "two", dataclasses.replace(CONFIG, total_tokens=2 * CONFIG.chunk_tokens))
    _assert_same_weights(two_chunks.transcoders, read_transcoders(tmp_path / "half"))
    with pytest.raises(InvalidInputError, match="training checkpoint"):
        export_checkpoint(tmp_path / "nothing-here", tmp_path / "out")


def _assert_same_weights(a, b) -> None:
    assert len(a.transcoders) == len(b.transcoders)
    for x, y in zip(a.transcoders, b.transcoders, strict=True):
        for name, tensor in x.tensors().items():
            assert torch.equal(tensor, y.tensors()[name]), name


def test_a_centred_encoder_starts_every_feature_at_mean_zero_on_the_first_chunk():
    """``centre_encoder``: b_enc = -W_enc x_mean, so each feature's pre-activation averages 0
    over the inputs it was initialised on; with a large mean input (Gemma 3's layer 4: the mean
    holds 66% of the inputs' mean square) features whose direction points away from it
    otherwise never reach the top k."""
    from scrying.transcoders.train import _init
    from scrying.transcoders.transcoder import TranscoderSpec

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=gen) + 3.0 * torch.randn(16, generator=gen)
    spec = TranscoderSpec(d_model=16, n_features=64, activation="topk", k=4, skip=True)
    plain, centred = _init(spec, 0, torch.float32, x.mean(0)), _init(spec, 0, torch.float32, x.mean(0), x.mean(0))
    with torch.no_grad():
        assert centred.pre_activations(x).mean(0).abs().max() < 1e-5
        assert plain.pre_activations(x).mean(0).abs().max() > 1.0
        fired = [(tc.encode(x) != 0).any(0).float().mean() for tc in (plain, centred)]
    assert fired[1] > fired[0]  # more features reach the top k at the start
    assert torch.equal(plain.W_enc, centred.W_enc) and torch.equal(plain.W_dec, centred.W_dec)


def test_data_init_points_the_encoder_at_centred_inputs():
    from scrying.transcoders.train import _init
    from scrying.transcoders.transcoder import TranscoderSpec

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=gen) + 2.0
    spec = TranscoderSpec(d_model=8, n_features=32, activation="topk", k=2, skip=False)
    tc = _init(spec, 3, torch.float32, x.mean(0), x.mean(0), x)
    rows = (x - x.mean(0)) / (x - x.mean(0)).norm(dim=1, keepdim=True)
    # every encoder row is one of the centred, normalised inputs (cosine 1 with some row)
    assert torch.allclose((tc.W_enc @ rows.T).max(dim=1).values, torch.ones(32), atol=1e-5)
    assert torch.allclose(tc.W_dec, 0.1 * tc.W_enc)
    with pytest.raises(Exception, match="encoder_init"):
        TranscoderTrainConfig(encoder_init="pca")


def test_random_init_layers_start_from_random_rows_and_the_others_from_the_data():
    """``random_init_layers``: those layers start as ``encoder_init="random"`` would (no decoder
    matching), every other layer as ``"data"`` with its matched decoder."""
    from scrying.transcoders.train import _initial
    from scrying.transcoders.transcoder import TranscoderSpec

    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(3, 200, 8, generator=gen) + 1.0, 3.0 * torch.randn(3, 200, 8, generator=gen)
    spec = TranscoderSpec(d_model=8, n_features=16, activation="topk", k=2, skip=True)
    data = dataclasses.replace(CONFIG, centre_encoder=True, encoder_init="data", match_decoder=True)
    mixed = _initial(spec, dataclasses.replace(data, random_init_layers=(1,)), x, y, torch.float32)
    all_data = _initial(spec, data, x, y, torch.float32)
    all_random = _initial(spec, dataclasses.replace(data, encoder_init="random", match_decoder=False), x, y, torch.float32)
    for ly, want in ((0, all_data), (1, all_random), (2, all_data)):
        for name, tensor in mixed[ly].tensors().items():
            assert torch.equal(tensor, want[ly].tensors()[name]), (ly, name)
    assert not torch.equal(all_data[1].W_enc, all_random[1].W_enc)
    with pytest.raises(Exception, match="random_init_layers"):
        TranscoderTrainConfig(random_init_layers=(1,))


def test_a_run_started_before_an_option_existed_resumes_when_the_option_is_at_its_default(model, full, tmp_path):
    """The checkpoint's stored config lacks a key (as a run started before ``match_decoder``
    existed): it resumes, to the same weights, when the current value is the default, and is
    refused when only that key differs."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    def kill(chunk: int) -> None:
        if chunk == 1:
            raise Killed

    def drop_key(run) -> None:
        path = run / "checkpoint" / "state.safetensors"
        with safe_open(str(path), framework="pt") as handle:
            progress = json.loads(handle.metadata()["progress"])
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        del progress["config"]["match_decoder"]
        save_file(tensors, str(path), metadata={"progress": json.dumps(progress)})

    with pytest.raises(Killed):
        train_transcoders(model, texts, tmp_path / "run", CONFIG, on_chunk=kill)
    drop_key(tmp_path / "run")
    resumed = train_transcoders(model, texts, tmp_path / "run", CONFIG)
    assert resumed.chunks_trained == 2
    for a, b in zip(full.transcoders.transcoders, resumed.transcoders.transcoders, strict=True):
        for name, tensor in a.tensors().items():
            assert torch.equal(tensor, b.tensors()[name]), name

    data = dataclasses.replace(CONFIG, encoder_init="data")
    with pytest.raises(Killed):
        train_transcoders(model, texts, tmp_path / "data", data, on_chunk=kill)
    drop_key(tmp_path / "data")
    shutil.copytree(tmp_path / "data", tmp_path / "matched")
    with pytest.raises(InvalidInputError, match="other settings"):  # only match_decoder differs
        train_transcoders(model, texts, tmp_path / "matched", dataclasses.replace(data, match_decoder=True))
    assert train_transcoders(model, texts, tmp_path / "data", data).chunks_trained == 2


def test_a_matched_decoder_starts_as_large_as_the_outputs_spread():
    from scrying.transcoders.train import _init
    from scrying.transcoders.transcoder import TranscoderSpec

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(300, 8, generator=gen) + 1.0
    y = 5.0 * torch.randn(300, 8, generator=gen) + 2.0
    spec = TranscoderSpec(d_model=8, n_features=32, activation="topk", k=4, skip=True)
    plain = _init(spec, 3, torch.float32, y.mean(0), x.mean(0), x)
    matched = _init(spec, 3, torch.float32, y.mean(0), x.mean(0), x, y)
    with torch.no_grad():
        made = (matched.encode(x) @ matched.W_dec).norm(dim=-1).mean()
        ratio = matched.W_dec.norm() / plain.W_dec.norm()
    assert float(made) == pytest.approx(float((y - y.mean(0)).norm(dim=-1).mean()), rel=1e-5)
    assert torch.allclose(matched.W_dec, ratio * plain.W_dec) and torch.equal(matched.W_enc, plain.W_enc)
    with pytest.raises(Exception, match="match_decoder"):
        TranscoderTrainConfig(match_decoder=True)
