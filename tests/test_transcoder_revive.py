"""Reviving dead TopK features by their encoder bias (:mod:`scrying.transcoders.revive`) and the
revival chunks that end a training run (``revive_chunks``)."""

from __future__ import annotations

import dataclasses
import math
import shutil

import pytest
import torch

from scrying.errors import ConfigError, InvalidInputError
from scrying.transcoders.revive import revive_dead
from scrying.transcoders.train import train_transcoders
from scrying.transcoders.train_config import TranscoderTrainConfig
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec
from tests.test_transcoder_training import CONFIG, Killed, texts
from tests.tiny_models import tiny


def _random_topk(seed: int = 0, n_features: int = 16, k: int = 3) -> Transcoder:
    gen = torch.Generator().manual_seed(seed)
    tc = Transcoder(TranscoderSpec(d_model=8, n_features=n_features, activation="topk", k=k, skip=True), dtype=torch.float64)
    with torch.no_grad():
        for p in tc.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return tc


def test_a_dead_feature_is_revived_on_the_rows_where_it_was_closest_to_the_top_k():
    """Feature 5, pushed far below every row's top k, fires on no row; revived at rate 1%, it is
    active on exactly ceil(1% x 1,000) = 10 rows: the 10 whose pre-activation came closest to the
    row's k-th largest (computed here with a plain sort). Nothing else changes."""
    tc = _random_topk()
    x = torch.randn(1000, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        tc.b_enc[5] -= 100.0
        pre = tc.pre_activations(x)
    assert not (tc.encode(x)[:, 5] != 0).any()
    kth = pre.sort(dim=-1, descending=True).values[:, tc.spec.k - 1]
    expected_rows = set((pre[:, 5] - kth).argsort(descending=True)[:10].tolist())
    before = {name: t.detach().clone() for name, t in tc.tensors().items()}

    revived = revive_dead(tc, x, 0.01, batch=128)  # several batches: the running top-m across them

    assert revived.nonzero()[:, 0].tolist() == [5]
    with torch.no_grad():
        on = tc.encode(x)[:, 5] != 0
    assert set(on.nonzero()[:, 0].tolist()) == expected_rows
    after = tc.tensors()
    for name, tensor in before.items():
        if name == "b_enc":
            changed = (after[name] != tensor).nonzero()[:, 0].tolist()
            assert changed == [5]
        else:
            assert torch.equal(after[name], tensor), name


def test_features_alive_on_some_row_are_left_alone():
    tc = _random_topk(seed=2, n_features=8, k=4)
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        tc.b_enc[[1, 2, 6]] -= 100.0
        fired = (tc.encode(x) != 0).any(0)
    b_enc = tc.b_enc.detach().clone()
    revived = revive_dead(tc, x, 0.02)
    assert torch.equal(revived, ~fired) and revived[[1, 2, 6]].all()
    assert torch.equal(tc.b_enc[fired], b_enc[fired])
    with torch.no_grad():
        counts = (tc.encode(x) != 0).sum(0)
    # revived together, they may push each other out of a row's top k: at most ceil(rate x rows) each
    assert (counts[revived] <= math.ceil(0.02 * 500)).all() and (counts[revived] > 0).any()


def test_rare_features_are_lifted_to_the_rate_and_the_rest_left_alone():
    """With ``rare``, a feature active on fewer than m = ceil(rate x rows) rows (here 10 of the
    m = 20) is lifted onto exactly the m rows a plain sort ranks closest to the top k (the rows it
    fired on among them); the features active on m rows or more are left alone. Without ``rare``
    it is not dead, so nothing changes."""
    tc = _random_topk(seed=0, n_features=16, k=3)
    x = torch.randn(1000, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    m = 20
    with torch.no_grad():
        pre = tc.pre_activations(x)
        kth = pre.sort(dim=-1, descending=True).values[:, tc.spec.k - 1]
        tc.b_enc[7] -= (pre[:, 7] - kth).sort(descending=True).values[4]  # feature 7 now rare
        before = (tc.encode(x) != 0).sum(0)
        pre = tc.pre_activations(x)
    kth = pre.sort(dim=-1, descending=True).values[:, tc.spec.k - 1]
    expected_rows = set((pre[:, 7] - kth).argsort(descending=True)[:m].tolist())
    assert (before < m).nonzero()[:, 0].tolist() == [7] and before[7] == 10
    b_enc = tc.b_enc.detach().clone()

    assert not revive_dead(tc, x, m / 1000).any() and torch.equal(tc.b_enc, b_enc)
    lifted = revive_dead(tc, x, m / 1000, rare=True, batch=256)

    assert lifted.nonzero()[:, 0].tolist() == [7]
    assert torch.equal(tc.b_enc[~lifted], b_enc[~lifted]) and tc.b_enc[7] > b_enc[7]
    with torch.no_grad():
        on = tc.encode(x)[:, 7] != 0
    assert set(on.nonzero()[:, 0].tolist()) == expected_rows


def test_revival_is_refused_for_other_activations_and_rates():
    relu = Transcoder(TranscoderSpec(d_model=4, n_features=8, activation="relu", skip=False))
    with pytest.raises(ConfigError, match="TopK"):
        revive_dead(relu, torch.zeros(3, 4), 0.1)
    with pytest.raises(ConfigError, match="rate"):
        revive_dead(_random_topk(), torch.zeros(3, 8, dtype=torch.float64), 0.0)
    with pytest.raises(ConfigError, match="revive_chunks"):
        TranscoderTrainConfig(activation="relu", k=None, revive_chunks=1)
    with pytest.raises(ConfigError, match="revive_rate"):
        TranscoderTrainConfig(revive_chunks=1, revive_rate=1.5)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny("gpt2", tmp_path_factory.mktemp("tiny"))


SCHEDULE = dataclasses.replace(CONFIG, total_tokens=2 * CONFIG.chunk_tokens)  # 2 chunks: enough to resume from
REVIVED = dataclasses.replace(SCHEDULE, revive_chunks=2, revive_rate=0.01)


def test_a_finished_run_resumes_into_its_revival_chunks_to_the_same_weights(model, tmp_path):
    """A run of the schedule alone (its checkpoint written before revival was set) resumes into
    two revival chunks and ends with the weights of a run that had them from the start; each
    revival chunk records how many features it revived per layer. Once revival has begun, other
    revival settings are refused."""
    whole = train_transcoders(model, texts, tmp_path / "whole", REVIVED)
    assert whole.chunks_trained == SCHEDULE.n_chunks + 2
    assert [("revived" in h) for h in whole.history] == [False] * SCHEDULE.n_chunks + [True, True]
    assert all(len(h["revived"]) == 3 for h in whole.history[-2:])
    assert sum(whole.history[-2]["revived"]) > 0  # the tiny set has features the chunk never fires

    plain = train_transcoders(model, texts, tmp_path / "staged", SCHEDULE)
    assert plain.chunks_trained == SCHEDULE.n_chunks
    resumed = train_transcoders(model, texts, tmp_path / "staged", REVIVED)
    assert resumed.chunks_trained == 2
    for a, b in zip(whole.transcoders.transcoders, resumed.transcoders.transcoders, strict=True):
        for name, tensor in a.tensors().items():
            assert torch.equal(tensor, b.tensors()[name]), name

    def kill(chunk: int) -> None:
        if chunk == SCHEDULE.n_chunks:  # after the first revival chunk
            raise Killed

    with pytest.raises(Killed):
        train_transcoders(model, texts, tmp_path / "killed", REVIVED, on_chunk=kill)
    shutil.copytree(tmp_path / "killed", tmp_path / "other-rate")
    with pytest.raises(InvalidInputError, match="into its revival"):
        train_transcoders(model, texts, tmp_path / "other-rate", dataclasses.replace(REVIVED, revive_rate=0.02))
    assert train_transcoders(model, texts, tmp_path / "killed", REVIVED).chunks_trained == 1


def test_the_train_command_can_revive_the_dead_alone(tmp_path, monkeypatch):
    """``scrying transcoders train --preset recipe`` lifts rare features (the preset's
    ``revive_rare``); ``--revive-dead-only`` trains the preset with it off, nothing else changed."""
    from scrying.cli import transcoders as cli
    from scrying.cli.main import main
    from scrying.transcoders.train_config import PRESETS

    seen = []

    class Stop(Exception):
        pass

    def capture(model, texts, out, config, **kwargs):
        seen.append(config)
        raise Stop

    monkeypatch.setattr(cli, "model_from_args", lambda args: None)
    monkeypatch.setattr(cli, "train_transcoders", capture)
    text = tmp_path / "t.txt"
    text.write_text("Dallas is a city in Texas.\n", encoding="utf-8")
    for extra in ([], ["--revive-dead-only"]):
        with pytest.raises(Stop):
            main(["transcoders", "train", "--preset", "recipe", "--out", str(tmp_path / "run"), "--text", str(text), *extra])
    assert seen[0] == PRESETS["recipe"] and seen[0].revive_rare
    assert seen[1] == dataclasses.replace(PRESETS["recipe"], revive_rare=False)
