import time

import pytest
import torch
from transformers import AutoModelForCausalLM

from scrying.models import load_model
from scrying.toys import (
    RepeatedSequenceTask,
    ToyModelConfig,
    TrainConfig,
    induction_accuracy,
    train_toy,
)


@pytest.mark.slow  # the conftest toy fixture also trains to > 0.9 in every default run
def test_toy_trainer_learns_induction_quickly(tmp_path):
    task = RepeatedSequenceTask(n_content=64, half_len=20)
    start = time.perf_counter()
    result = train_toy(tmp_path, task, ToyModelConfig(), TrainConfig(steps=300, eval_every=100, checkpoint_every=150))
    elapsed = time.perf_counter() - start
    assert result.accuracy >= 0.9
    assert elapsed < 120
    assert [p.name for p in result.checkpoints] == ["step-000150", "step-000300"]
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "history.jsonl").is_file()
    # Before training the model cannot do the task: accuracy near chance (1/64).
    assert result.history.accuracy.iloc[-1] > 0.9


def test_training_is_seeded(tmp_path):
    cfg = TrainConfig(steps=5, eval_every=5, seed=3, eval_batch=8)
    a = train_toy(tmp_path / "a", RepeatedSequenceTask(half_len=4), ToyModelConfig(d_model=32), cfg)
    b = train_toy(tmp_path / "b", RepeatedSequenceTask(half_len=4), ToyModelConfig(d_model=32), cfg)
    assert a.history.loss.tolist() == b.history.loss.tolist()


def test_toy_loads_hooked_with_reference_logits(toy_dir, toy_model):
    reference = AutoModelForCausalLM.from_pretrained(toy_dir).eval()
    tokens, mask = RepeatedSequenceTask(n_content=64, half_len=20).sample_with_mask(4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = toy_model(tokens)
        theirs = reference(tokens).logits
        assert (ours - theirs).abs().max() < 1e-5
        assert induction_accuracy(ours, tokens, mask) > 0.9
        fixed = RepeatedSequenceTask(n_content=64, half_len=20, min_period=None)
        tokens, mask = fixed.sample_with_mask(4, torch.Generator().manual_seed(2))
        assert induction_accuracy(toy_model(tokens), tokens, mask) > 0.9


def test_masks_mark_exactly_the_repeated_tokens():
    tokens, mask = RepeatedSequenceTask(n_content=64, half_len=10, min_period=3).sample_with_mask(16, torch.Generator().manual_seed(0))
    for row, row_mask in zip(tokens, mask, strict=True):
        for p in range(1, len(row) - 1):
            if row_mask[p]:  # the next token already appeared right after an earlier copy of row[p]
                earlier = [q for q in range(1, p) if row[q] == row[p] and row[q + 1] == row[p + 1]]
                assert earlier


def test_gpt2_toy_also_loads(tmp_path):
    result = train_toy(tmp_path, RepeatedSequenceTask(half_len=4), ToyModelConfig(arch="gpt2", d_model=32), TrainConfig(steps=3, eval_every=3, eval_batch=4))
    model = load_model(str(result.out_dir))
    reference = AutoModelForCausalLM.from_pretrained(result.out_dir).eval()
    tokens = model.to_tokens("t1 t2 t3 t1 t2")
    with torch.no_grad():
        assert (model(tokens) - reference(tokens).logits).abs().max() < 1e-5
