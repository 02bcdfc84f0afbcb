"""Transcoder directories, labels.json and training text are read safely: whatever the bytes, a
reader returns or raises a ScryingError (the CLI's one-line exit 2), never a traceback; the cheap
pre-flight checks agree with the readers; and each refusal names the file and what was expected.

Hypothesis fuzzes (a) config.yaml bytes, (b) mutations of a valid config, (c) a layer's
safetensors bytes and headers, (d) labels.json, (e) training text; the example tests below pin
each case by its message."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from scrying.errors import InvalidInputError, ScryingError
from scrying.transcoders import (
    Transcoder,
    TranscoderSet,
    TranscoderSpec,
    check_text_files,
    check_transcoders,
    read_labels,
    read_transcoders,
    write_labels,
    write_transcoders,
)
from scrying.transcoders.corpus import read_texts

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
D_MODEL, N_FEATURES = 3, 4


def tiny_set(d_model: int = D_MODEL, activation: str = "topk", k: int | None = 2, skip: bool = True, seed: int = 0) -> TranscoderSet:
    spec = TranscoderSpec(d_model=d_model, n_features=N_FEATURES, activation=activation, k=k, skip=skip)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        tc = Transcoder(spec)
        out.append(tc.load_tensors({n: torch.randn(p.shape, generator=gen) for n, p in tc.tensors().items()}))
    return TranscoderSet(out, "tiny")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny set in ``tc/``, and a bait set beside it (valid files of other weights that a
    config escaping its directory with ``..`` would reach)."""
    root = tmp_path_factory.mktemp("pristine")
    write_transcoders(tiny_set(seed=1), root)
    return write_transcoders(tiny_set(), root / "tc")


@contextmanager
def copy_of(pristine: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(pristine.parent, Path(tmp), dirs_exist_ok=True)
        yield Path(tmp) / "tc"


BAIT_WEIGHTS = [tc.W_enc for tc in tiny_set(seed=1).transcoders]


def outcome(directory: Path) -> str:
    """Check, then read; anything but a ScryingError escapes and fails the test. The check agrees
    with the reader: it refuses what the reader refuses for its form (with the same message) and
    passes what the reader reads; the reader alone refuses non-finite values. What is read came
    from inside the directory (never the bait beside it)."""
    try:
        check_transcoders(directory)
        checked = None
    except ScryingError as err:
        checked = str(err)
    try:
        tset = read_transcoders(directory)
    except ScryingError as err:
        assert (str(err) == checked) if checked is not None else ("non-finite" in str(err) or "NaN" in str(err)), str(err)
        event(f"refused: {str(err).split(': ')[1][:30] if ': ' in str(err) else str(err)[:30]}")
        return "refused"
    assert checked is None
    for tc in tset.transcoders:
        assert not any(torch.equal(tc.W_enc, w) for w in BAIT_WEIGHTS), "read a file outside the directory"
    event("read")
    return "read"


# ---- (a) config.yaml bytes -------------------------------------------------------------------

YAML_BITS = ["feature_input_hook: mlp.hook_in\n", "feature_output_hook: mlp.hook_out\n", "transcoders:", " [", "]",
             "\n- ", "layer_0.safetensors", "layer_1.safetensors", "../", "/etc/passwd", "{layer: 0, filepath: ",
             "}", ", ", "!!python/object/apply:os.system ", "&a ", "*a", "scrying: {schema_version: 1, activation: topk, k: ",
             "2", "0", "-1", "2001-13-45", "!!binary x", "!!int x", "'", '"', "\t", "? ", ": ", "\n", "\xff", "\x00", "~"]


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(YAML_BITS), max_size=25).map(lambda b: "".join(b).encode())))
def test_fuzz_config_bytes(pristine, data):
    with copy_of(pristine) as directory:
        (directory / "config.yaml").write_bytes(data)
        outcome(directory)


# ---- (b) mutations of a valid config ---------------------------------------------------------

PATHS = ["layer_0.safetensors", "../layer_0.safetensors", "/etc/passwd", "hf://a/b", "", ".", "sub/../layer_1.safetensors",
         "layer_0.safetensors\x00", "x" * 300]
WORDS = ["relu", "jumprelu", "topk", "mlp.hook_in", "hook_resid_mid", "hook_mlp_out", "transcoder_set", "cross_layer_transcoder"]
KEYS = ["model_name", "model_kind", "feature_input_hook", "feature_output_hook", "transcoders", "scrying",
        "schema_version", "activation", "k", "id", "layer", "filepath"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 6), st.floats(), st.text(max_size=8),
                    st.sampled_from(PATHS + WORDS + KEYS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=3), max_leaves=6)


def _places(node: object, at: tuple = ()) -> list[tuple]:
    """Every path (keys and indices) into a YAML tree."""
    out = [at]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        out += _places(child, (*at, key))
    return out


@FUZZ
@given(st.booleans(), st.data())
def test_fuzz_config_mutations(pristine, old_layout, data):
    config = yaml.safe_load((pristine / "config.yaml").read_text())
    if old_layout:
        config["transcoders"] = [{"id": f"t{i}", "layer": i, "filepath": f} for i, f in enumerate(config["transcoders"])]
    for _ in range(data.draw(st.integers(1, 3))):
        place = data.draw(st.sampled_from(_places(config)[1:]))
        parent = config
        for key in place[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["set", "delete", "add path", "path"]))
        if action == "path" and isinstance(config.get("transcoders"), list) and config["transcoders"]:
            n = data.draw(st.integers(0, len(config["transcoders"]) - 1))
            if isinstance(config["transcoders"][n], dict):
                config["transcoders"][n]["filepath"] = data.draw(st.sampled_from(PATHS))
            else:
                config["transcoders"][n] = data.draw(st.sampled_from(PATHS))
        elif action == "delete":
            del parent[place[-1]]
        elif action == "set":
            parent[place[-1]] = data.draw(VALUES)
        elif isinstance(parent, list):
            parent.append(data.draw(st.sampled_from(PATHS)))
        if not isinstance(config, dict) or not _places(config)[1:]:
            break
    with copy_of(pristine) as directory:
        (directory / "config.yaml").write_text(yaml.safe_dump(config))
        outcome(directory)


# ---- (c) a layer's safetensors bytes ---------------------------------------------------------

DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "I64": 8, "BOOL": 1, "U8": 1}
NAMES = ["W_enc", "W_dec", "b_enc", "b_dec", "W_skip", "threshold", "activation_function.threshold", "extra"]


RIGHT = {"W_enc": [N_FEATURES, D_MODEL], "W_dec": [N_FEATURES, D_MODEL], "b_enc": [N_FEATURES], "b_dec": [D_MODEL],
         "W_skip": [D_MODEL, D_MODEL], "threshold": [N_FEATURES], "activation_function.threshold": [N_FEATURES], "extra": [1]}


@st.composite
def safetensors_bytes(draw: st.DrawFn) -> bytes:
    """A well-formed safetensors file: mostly the right names, dtypes and shapes, each at
    times replaced by a random one; random data (so NaN and inf too)."""
    header, data, offset = {}, b"", 0
    wrong = st.integers(0, 9).map(lambda n: n == 0)
    names = [n for n in NAMES if (n in RIGHT and n[0] in "Wb") != draw(wrong)]
    for name in names:
        dtype = draw(st.sampled_from(sorted(DTYPES))) if draw(wrong) else "F32"
        shape = draw(st.lists(st.sampled_from([0, 1, 2, D_MODEL, N_FEATURES]), max_size=3)) if draw(wrong) else RIGHT[name]
        if name == "W_dec" and draw(wrong):
            shape = [D_MODEL, N_FEATURES]  # the older orientation
        size = DTYPES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        data += draw(st.binary(min_size=size, max_size=size))
        offset += size
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@FUZZ
@given(st.booleans(), st.data())
def test_fuzz_layer_file(pristine, drop_block, data):
    original = (pristine / "layer_0.safetensors").read_bytes()
    how = data.draw(st.sampled_from(["random", "truncate", "flip", "header", "header"]))
    if how == "random":
        new = data.draw(st.binary(max_size=300))
    elif how == "truncate":
        new = original[: data.draw(st.integers(0, len(original) - 1))]
    elif how == "flip":
        new = bytearray(original)
        for _ in range(data.draw(st.integers(1, 4))):
            new[data.draw(st.integers(0, len(new) - 1))] = data.draw(st.integers(0, 255))
        new = bytes(new)
    else:
        new = data.draw(safetensors_bytes())
    with copy_of(pristine) as directory:
        (directory / "layer_0.safetensors").write_bytes(new)
        if drop_block:
            config = yaml.safe_load((directory / "config.yaml").read_text())
            del config["scrying"]
            (directory / "config.yaml").write_text(yaml.safe_dump(config))
        outcome(directory)


# ---- (d) labels.json -------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers(-2, 10**6) | st.floats(allow_nan=False) | st.text(max_size=6) \
    | st.sampled_from(["0:1", "3:117", "03:1", "1:-1", "a:b", "1:2:3", "label", "features", "schema_version"])
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["label", "features", "schema_version", "0:1", "3:117", "x"]) | st.text(max_size=4), inner, max_size=3), max_leaves=8)
GOOD_LABEL = st.fixed_dictionaries({"label": st.text(max_size=6)}, optional={"contexts": JSON_VALUES})
WELL_FORMED_LABELS = st.fixed_dictionaries({  # mostly well-formed, at times spoilt
    "schema_version": st.sampled_from([1] * 6 + [2, True, "1"]),
    "features": st.dictionaries(st.sampled_from(["0:1", "3:117", "1:0", "12:7", "5:5", "03:1", "1:2:3"]) | st.text(max_size=5),
                                st.one_of(GOOD_LABEL, GOOD_LABEL, GOOD_LABEL, JSON_VALUES), max_size=4),
}).map(lambda v: json.dumps(v).encode())


@FUZZ
@given(st.one_of(st.binary(max_size=120), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_fuzz_label_bytes(pristine, data):
    labels_outcome(pristine, data)


@FUZZ
@given(WELL_FORMED_LABELS)
def test_fuzz_label_values(pristine, data):
    labels_outcome(pristine, data)


def labels_outcome(pristine: Path, data: bytes) -> None:
    """read_labels returns typed labels or refuses; the pre-flight and the merge agree with it,
    and a file that reads merges and reads back the same."""
    with copy_of(pristine) as directory:
        (directory / "labels.json").write_bytes(data)
        try:
            labels = read_labels(directory)
        except ScryingError as err:
            event(f"refused: {str(err).split(': ')[1][:20]}")
            with pytest.raises(ScryingError) as pre:
                check_transcoders(directory)
            assert str(pre.value) == str(err)
            with pytest.raises(ScryingError):
                write_labels(directory, {})
            return
        check_transcoders(directory)
        event(f"read {min(len(labels), 2)}+ labels")
        assert all(isinstance(key, tuple) and isinstance(value, str) for key, value in labels.items())
        write_labels(directory, {})
        assert read_labels(directory) == labels


# ---- (e) training text -----------------------------------------------------------------------

@FUZZ
@given(st.one_of(st.binary(max_size=100), st.lists(st.sampled_from(["ab", " ", "\n", "\r", "é", "\xff", "\xc3", "\x00"]),
                                                 max_size=20).map(lambda b: "".join(b).encode("latin-1"))))
def test_fuzz_text_files(data):
    """read_texts refuses exactly the files that are not UTF-8 (the oracle: bytes.decode), and
    check_text_files refuses those and the blank ones."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text.txt"
        path.write_bytes(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None:
            with pytest.raises(InvalidInputError, match="text.txt is not UTF-8"):
                list(read_texts([path]))
            with pytest.raises(InvalidInputError, match="text.txt is not UTF-8 text: byte"):
                check_text_files([path])
            return
        lines = list(read_texts([path]))
        if lines:
            check_text_files([path])
        else:
            with pytest.raises(InvalidInputError, match="no non-blank line"):
                check_text_files([path])
        assert " ".join(lines).split() == text.split()


# ---- examples, one a case ---------------------------------------------------------------------

def _config(directory: Path, **changes: object) -> Path:
    config = yaml.safe_load((directory / "config.yaml").read_text())
    config.update(changes)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def _refused(directory: Path, match: str) -> str:
    with pytest.raises(InvalidInputError, match=match) as err:
        check_transcoders(directory)
    with pytest.raises(InvalidInputError, match=match):
        read_transcoders(directory)
    return str(err.value)


@pytest.mark.parametrize("text,match", [
    ("feature_input_hook: [mlp.hook_in\n", "config.yaml: not a YAML transcoder config"),
    ("a: 2001-13-45\n", "config.yaml: not a YAML transcoder config.*month"),
    ("- layer_0.safetensors\n", "config.yaml: expected a YAML mapping.*got list"),
    ("42\n", "config.yaml: expected a YAML mapping.*got int"),
    ("\xff\xfe\x00junk", "config.yaml: not a YAML"),
])
def test_config_that_is_not_yaml_or_not_a_mapping_is_refused(tmp_path, text, match):
    (tmp_path / "config.yaml").write_bytes(text.encode("latin-1"))
    _refused(tmp_path, match)


def test_python_tags_are_refused_and_not_run(tmp_path):
    target = tmp_path / "pwned"
    (tmp_path / "config.yaml").write_text(f'!!python/object/apply:os.system ["touch {target}"]\n')
    _refused(tmp_path, "config.yaml: not a YAML transcoder config.*python/object/apply")
    assert not target.exists()


@pytest.mark.parametrize("entry,match", [
    ("/etc/passwd", "'/etc/passwd' resolves to /etc/passwd, outside the directory"),
    ("../layer_0.safetensors", r"'\.\./layer_0\.safetensors' resolves to .*, outside the directory"),
    ("sub/../../layer_0.safetensors", "outside the directory"),
])
def test_files_outside_the_directory_are_refused(tmp_path, entry, match):
    tset = tiny_set()
    write_transcoders(tset, tmp_path)  # ../layer_0.safetensors exists beside the directory
    directory = write_transcoders(tset, tmp_path / "tc")
    (tmp_path / "tc" / "sub").mkdir()
    _refused(_config(directory, transcoders=[entry, "layer_1.safetensors"]), match)


def test_symlinks_must_stay_inside_and_absolute_paths_inside_are_read(tmp_path):
    outside = write_transcoders(tiny_set(), tmp_path / "elsewhere")
    directory = write_transcoders(tiny_set(), tmp_path / "tc")
    os.symlink(outside / "layer_0.safetensors", directory / "link_out.safetensors")
    os.symlink(directory / "layer_0.safetensors", directory / "link_in.safetensors")
    _refused(_config(directory, transcoders=["link_out.safetensors", "layer_1.safetensors"]), "'link_out.safetensors' resolves to .*elsewhere.*outside")
    _config(directory, transcoders=["link_in.safetensors", str(directory / "layer_1.safetensors")])
    check_transcoders(directory)
    assert len(read_transcoders(directory).transcoders) == 2
    os.symlink(directory / "loop", directory / "loop")
    _refused(_config(directory, transcoders=["loop"]), "'loop'")


@pytest.mark.parametrize("entries,match", [
    ([{"id": "a", "filepath": "layer_0.safetensors"}], r"transcoders\[0\] is .*expected every entry a path, or every entry \{id, layer, filepath\}"),
    ([{"id": "a", "layer": "zero", "filepath": "layer_0.safetensors"}], r"transcoders\[0\]\.layer 'zero', expected a new integer >= 0"),
    ([{"layer": True, "filepath": "layer_0.safetensors"}], r"transcoders\[0\]\.layer True"),
    ([{"layer": 0, "filepath": "layer_0.safetensors"}, {"layer": 0, "filepath": "layer_1.safetensors"}], r"transcoders\[1\]\.layer 0"),
    ([{"layer": 0, "filepath": "layer_0.safetensors"}, "layer_1.safetensors"], r"transcoders\[1\] is 'layer_1"),
    ([{"layer": 0, "filepath": 7}], "a transcoder entry must be a path, got 7"),
    ([], "'transcoders' must be a non-empty list"),
])
def test_older_entries_without_a_proper_layer_are_refused(tmp_path, entries, match):
    _refused(_config(write_transcoders(tiny_set(), tmp_path), transcoders=entries), match)


@pytest.mark.parametrize("changes,match", [
    ({"scrying": [1]}, r"'scrying' must be a mapping .*got \[1\]"),
    ({"scrying": {"schema_version": True, "activation": "topk", "k": 2}}, "scrying.schema_version True, expected 1"),
    ({"scrying": {"schema_version": 1, "activation": "topk", "k": 0}}, "scrying.k 0, expected a positive integer"),
    ({"scrying": {"schema_version": 1, "activation": "topk", "k": "2"}}, "scrying.k '2', expected a positive integer"),
    ({"scrying": {"schema_version": 1, "activation": "topk", "k": 5}}, r"layer_0.safetensors \(layer 0\) with the scrying block .*k must be in 1..4, got 5"),
    ({"scrying": {"schema_version": 1, "activation": "gelu"}}, "scrying.activation 'gelu', expected one of"),
    ({"scrying": {"schema_version": 1, "activation": "relu", "k": 2}}, r"\(layer 0\) with the scrying block .*k is required for activation 'topk' and only for it"),
    ({"feature_input_hook": ["mlp.hook_in"]}, r"feature_input_hook \['mlp.hook_in'\] is not supported"),
    ({"model_name": {"a": 1}}, "model_name {'a': 1}, expected a string"),
    ({"model_kind": "cross_layer_transcoder"}, "model_kind 'cross_layer_transcoder', expected 'transcoder_set'"),
])
def test_config_values_of_the_wrong_kind_are_refused(tmp_path, changes, match):
    _refused(_config(write_transcoders(tiny_set(), tmp_path), **changes), match)


def _layer_0(directory: Path, **changes: torch.Tensor | None) -> Path:
    tensors = {**load_file(str(directory / "layer_0.safetensors")), **changes}
    save_file({k: v for k, v in tensors.items() if v is not None}, str(directory / "layer_0.safetensors"))
    return directory


@pytest.mark.parametrize("changes,match", [
    ({"b_dec": torch.zeros(D_MODEL, dtype=torch.int64)}, r"tensor 'b_dec' has dtype I64, expected one of"),
    ({"W_enc": torch.zeros(N_FEATURES, D_MODEL, dtype=torch.bool)}, "tensor 'W_enc' has dtype BOOL"),
    ({"b_enc": torch.zeros(N_FEATURES, 1)}, r"b_enc has shape \(4, 1\), expected \(feature,\)"),
    ({"W_enc": torch.zeros(N_FEATURES * D_MODEL)}, r"W_enc has shape \(12,\), expected \(4, 3\)"),
    ({"W_skip": torch.zeros(D_MODEL, D_MODEL, 1)}, r"W_skip has shape \(3, 3, 1\), expected \(3, 3\)"),
    ({"b_dec": None}, r"missing \['b_dec'\]"),
    ({"extra": torch.zeros(1)}, r"unexpected \['extra'\]"),
    ({"threshold": torch.zeros(N_FEATURES)}, "has a threshold tensor but the activation is 'topk'"),
])
def test_layer_files_of_the_wrong_form_are_refused(tmp_path, changes, match):
    _refused(_layer_0(write_transcoders(tiny_set(), tmp_path), **changes), r"layer_0.safetensors \(layer 0\).*" + match)


def test_corrupt_and_mismatched_layer_files_are_refused(tmp_path):
    directory = write_transcoders(tiny_set(), tmp_path / "a")
    (directory / "layer_1.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    _refused(directory, r"layer_1.safetensors \(layer 1\): not a readable safetensors file \(SafetensorError")
    (directory / "layer_1.safetensors").write_bytes(b"")
    _refused(directory, r"layer_1.safetensors \(layer 1\): not a readable safetensors file")
    other = write_transcoders(tiny_set(d_model=5), tmp_path / "b")
    shutil.copy(other / "layer_1.safetensors", directory / "layer_1.safetensors")
    _refused(directory, r"disagree on d_model \(layer 0 \(layer_0.safetensors\): 3, layer 1 \(layer_1.safetensors\): 5\)")


def test_nan_weights_pass_the_header_check_and_are_refused_on_read(tmp_path):
    w_dec = torch.randn(N_FEATURES, D_MODEL)
    w_dec[1, 2] = float("nan")
    directory = _layer_0(write_transcoders(tiny_set(), tmp_path), W_dec=w_dec)
    check_transcoders(directory)  # headers only: the weights are not read
    with pytest.raises(InvalidInputError, match=r"layer_0.safetensors \(layer 0\): tensor 'W_dec' has 1 non-finite values"):
        read_transcoders(directory)


@pytest.mark.parametrize("content,match", [
    (b"{", "labels.json: not JSON"),
    (b"\xff\xfe", "labels.json: not JSON"),
    (b"[1]", r"labels.json: expected a JSON object .*got \[1\]"),
    (b'{"schema_version": 1}', "labels.json: 'features' None, expected an object"),
    (b'{"schema_version": true, "features": {}}', "labels.json: schema_version True, expected 1"),
    (b'{"schema_version": 1, "features": {"a:b": {"label": "x"}}}', "labels.json: features key 'a:b', expected LAYER:INDEX"),
    (b'{"schema_version": 1, "features": {"03:1": {"label": "x"}}}', "features key '03:1'"),
    (b'{"schema_version": 1, "features": {"3:1": {"label": 7}}}', r"features\['3:1'\] is .*expected an object with a text 'label'"),
    (b'{"schema_version": 1, "features": {"3:1": {"label": "\\ud800"}}}', r"features\['3:1'\]"),
    (b"[" * 100000, "labels.json: not JSON"),
])
def test_bad_label_files_are_refused_by_name(tmp_path, content, match):
    directory = write_transcoders(tiny_set(), tmp_path)
    (directory / "labels.json").write_bytes(content)
    for call in (read_labels, check_transcoders, lambda d: write_labels(d, {})):
        with pytest.raises(InvalidInputError, match=match):
            call(directory)
    assert (directory / "labels.json").read_bytes() == content  # a refused merge leaves it alone


def test_labels_are_found_beside_a_config_given_as_a_file(tmp_path):
    directory = write_transcoders(tiny_set(), tmp_path)
    (directory / "labels.json").write_text('{"schema_version": 1, "features": {"1:3": {"label": "x"}}}')
    assert read_labels(directory / "config.yaml") == read_labels(directory) == {(1, 3): "x"}


def test_text_that_is_missing_or_not_utf8_is_refused_by_name(tmp_path):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("first line\n\nsecond line\n", encoding="utf-8")
    bad.write_bytes("ok\nstill ok\nlatin-1: caf\xe9\n".encode("latin-1"))
    check_text_files([good])
    assert list(read_texts([good])) == ["first line", "second line"]
    with pytest.raises(InvalidInputError, match=r"bad.txt is not UTF-8 text: byte offset 24 \(line 3\): invalid continuation byte"):
        check_text_files([good, bad])
    with pytest.raises(InvalidInputError, match=r"bad.txt is not UTF-8 text: byte offset 24 \(line 3\)"):
        list(read_texts([good, bad]))
    with pytest.raises(InvalidInputError, match="missing.txt does not exist"):
        check_text_files([good, tmp_path / "missing.txt"])
    with pytest.raises(InvalidInputError, match=f"{tmp_path} is not a file"):
        check_text_files([tmp_path])
    truncated = tmp_path / "truncated.txt"
    truncated.write_bytes("caf\xe9".encode()[:-1])
    with pytest.raises(InvalidInputError, match=r"truncated.txt is not UTF-8 text: byte offset 3 \(line 1\): unexpected end of data"):
        check_text_files([truncated])
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n")
    with pytest.raises(InvalidInputError, match="hold no non-blank line"):
        check_text_files([blank])
    check_text_files([blank, good])
    check_text_files([])  # the default corpus: nothing to check
