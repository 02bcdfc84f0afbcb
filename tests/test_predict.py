import pytest

from scrying.errors import ConfigError, PromptError
from scrying.predict import PredictConfig, predict
from scrying.prompts import single_token, tokenize, tokenize_batch

# A repeated random sequence of the toy's training length: induction predicts the continuation.
SEQ = [17, 3, 41, 8, 60, 25, 12, 33, 5, 49, 21, 38, 2, 56, 30, 11, 44, 9, 27, 63]
REPEAT = " ".join(f"t{i}" for i in SEQ + SEQ[:6])



def test_top_k_probabilities_are_the_softmax(toy_model):
    import torch

    result = predict(toy_model, REPEAT, PredictConfig(top_k=68))
    assert abs(result.top.prob.sum() - 1.0) < 1e-5
    assert result.top.token.iloc[0] == f"t{SEQ[6]}"  # induction
    with torch.no_grad():
        logits = toy_model(toy_model.to_tokens(REPEAT))[0, -1]
    assert result.top.id.iloc[0] == int(logits.argmax())


def test_nucleus_with_tiny_top_p_is_greedy(toy_model):
    greedy = predict(toy_model, REPEAT, PredictConfig(max_new_tokens=3)).continuation
    nucleus = predict(toy_model, REPEAT, PredictConfig(max_new_tokens=3, sampling="nucleus", top_p=1e-6)).continuation
    assert greedy == nucleus == " ".join(f"t{i}" for i in SEQ[6:9])


def test_prompt_errors(toy_model):
    with pytest.raises(PromptError, match="prompt is empty"):
        tokenize(toy_model, "   ")
    with pytest.raises(PromptError, match="context holds 64"):
        tokenize(toy_model, " ".join(["t1"] * 80))
    with pytest.raises(PromptError, match="same token length"):
        tokenize_batch(toy_model, ["t1 t2", "t1"])
    with pytest.raises(PromptError, match="2 tokens"):
        single_token(toy_model, "t1 t2", what="correct token")
    assert single_token(toy_model, "t3") == 7


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="top_p"):
        PredictConfig(top_p=0.0)
    with pytest.raises(ConfigError, match="top_k"):
        PredictConfig(top_k=0)
