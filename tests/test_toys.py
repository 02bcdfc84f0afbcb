import json

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


def test_toy_trainer_learns_induction(tmp_path):
    """300 steps take an untrained model from chance (1/64) to > 0.9 induction accuracy on held-out
    sequences; checkpoints and the history are written (its speed is in the default suite's time)."""
    from scrying.toys.train import _evaluate, build_hf_model
    from scrying.toys.vocab import build_tokenizer

    task = RepeatedSequenceTask(n_content=64, half_len=20)
    train = TrainConfig(steps=300, eval_every=100, checkpoint_every=150)
    result = train_toy(tmp_path, task, ToyModelConfig(), train)
    assert result.accuracy >= 0.9
    assert [p.name for p in result.checkpoints] == ["step-000150", "step-000300"]
    assert (tmp_path / "model.safetensors").is_file()
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [100, 200, 300] == result.history.step.tolist()
    untrained = build_hf_model(ToyModelConfig(), len(build_tokenizer(64)), train.seed)
    tokens, mask = task.sample_with_mask(train.eval_batch, torch.Generator().manual_seed(train.seed + 10_000))
    assert _evaluate(untrained, tokens, mask) < 0.1


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
