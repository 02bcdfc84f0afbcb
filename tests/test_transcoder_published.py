"""Published dictionaries read right: Gemma Scope npz, Gemma Scope 2 and SAELens saves, each
written here in its exact layout (by sae-lens itself where it is installed; by hand per the
formats' source otherwise, see :mod:`scrying.transcoders.published_formats`), read back, and
checked against a reference computed here from the raw arrays in the format's own convention
(``x @ W_enc + b_enc``, ``relu(pre) * (pre > threshold)``, ``+ x @ affine_skip_connection``).
Refusals name the file and the key; the sites Gemma Scope 2 names are scrying's; a set traces
through ``scrying trace --transcoders DIR`` on a tiny Gemma 3."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import shutil
import sys
import tempfile
import types
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from scrying.attribution import Graph
from scrying.cli.main import main
from scrying.errors import InvalidInputError, ModelLoadError, ScryingError
from scrying.prompts import tokenize
from scrying.sites import Component, Site, recorded
from scrying.transcoders import TranscoderBasis, TranscoderSet, read_transcoders
from scrying.transcoders.hub import download_published
from scrying.transcoders.published import fold_input_gain, inspect_published, read_published
from tests.tiny_models import tiny

D, F = 6, 10  # d_model, features (unequal, so a transposed matrix shows in its shape)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _jumprelu_arrays(rng: np.random.Generator, d: int = D, f: int = F) -> dict[str, np.ndarray]:
    """Format-convention arrays: encoder d x f, decoder f x d; some thresholds negative (where
    ``relu(pre) * (pre > t)`` and ``pre * (pre > t)`` differ)."""
    return {"W_enc": rng.normal(size=(d, f)), "W_dec": rng.normal(size=(f, d)), "b_enc": rng.normal(size=f),
            "b_dec": rng.normal(size=d), "threshold": rng.uniform(-0.5, 1.0, size=f)}


def _reference(a: dict[str, np.ndarray], x: np.ndarray, skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Google's Gemma Scope JumpReLU, from the raw arrays: (features, output)."""
    pre = x @ a["W_enc"] + a["b_enc"]
    acts = np.maximum(pre, 0) * (pre > a["threshold"])
    out = acts @ a["W_dec"] + a["b_dec"]
    return acts, out if skip is None else out + x @ skip


def write_gemma_scope(root: Path, layers: int, seed: int = 0, d: int = D, l0: int = 54) -> list[dict[str, np.ndarray]]:
    """``layer_<L>/width_16k/average_l0_<N>/params.npz``, float32, as the hub holds them."""
    rng, out = _rng(seed), []
    for layer in range(layers):
        a = _jumprelu_arrays(rng, d)
        folder = root / f"layer_{layer}" / "width_16k" / f"average_l0_{l0}"
        folder.mkdir(parents=True)
        np.savez(folder / "params.npz", **{k: v.astype(np.float32) for k, v in a.items()})
        out.append({k: v.astype(np.float32).astype(np.float64) for k, v in a.items()})
    return out


def write_gemma_scope_2(root: Path, layers: int, *, affine: bool = True, seed: int = 0, d: int = D, kind: str = "transcoder") -> list[dict[str, np.ndarray]]:
    """``transcoder_all/layer_<L>_width_16k_l0_small[_affine]/{config.json, params.safetensors}``."""
    rng, out = _rng(seed), []
    for layer in range(layers):
        a = _jumprelu_arrays(rng, d)
        if affine:
            a["affine_skip_connection"] = rng.normal(size=(d, d))  # not symmetric: orientation shows
        folder = root / "transcoder_all" / f"layer_{layer}_width_16k_l0_small{'_affine' * affine}"
        folder.mkdir(parents=True)
        names = {"W_enc": "w_enc", "W_dec": "w_dec"}
        save_file({names.get(k, k): v.astype(np.float32) for k, v in a.items()}, str(folder / "params.safetensors"))
        point = f"model.layers.{layer}"
        (folder / "config.json").write_text(json.dumps({
            "hf_hook_point_in": f"{point}.pre_feedforward_layernorm.output" if kind == "transcoder" else f"{point}.output",
            "hf_hook_point_out": f"{point}.post_feedforward_layernorm.output" if kind == "transcoder" else f"{point}.output",
            "width": F, "model_name": "google/gemma-3-270m", "architecture": "jump_relu", "l0": 10,
            "affine_connection": affine, "type": kind}))
        out.append({k: v.astype(np.float32).astype(np.float64) for k, v in a.items()})
    return out


def write_saelens(folder: Path, arch: str, layer: int, seed: int = 0, d: int = D, **cfg_extra) -> dict[str, np.ndarray]:
    """What sae_lens 6.51's ``SAE.save_model`` writes (``cfg.json`` = ``cfg.to_dict()`` in its
    field order, ``sae_weights.safetensors`` = the state dict), by hand."""
    rng = _rng(seed)
    a = _jumprelu_arrays(rng, d)
    transcoder = "transcoder" in arch
    if "jumprelu" not in arch:
        del a["threshold"]
    if "skip" in arch:
        a["W_skip"] = rng.normal(size=(d, d))
    metadata = {"sae_lens_version": "6.51.1", "sae_lens_training_version": "6.51.1", "hook_name": f"blocks.{layer}.mlp.hook_in"}
    if transcoder:
        metadata["hook_name_out"] = f"blocks.{layer}.hook_mlp_out"
    metadata["model_name"] = "tiny"
    cfg = {"d_in": d, "d_sae": F, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": not transcoder,
           "normalize_activations": "none", "reshape_activations": "none", "metadata": metadata}
    if transcoder:
        cfg["d_out"] = d
    if arch == "topk":
        cfg.update(k=3, rescale_acts_by_decoder_norm=False)
    cfg.update(cfg_extra)
    cfg["architecture"] = arch
    folder.mkdir(parents=True)
    save_file({k: v.astype(np.float32) for k, v in a.items()}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return {k: v.astype(np.float32).astype(np.float64) for k, v in a.items()}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


# --------------------------------------------------------------------------- the numbers
def test_gemma_scope_npz_encodes_and_decodes_as_googles_jumprelu(tmp_path):
    arrays = write_gemma_scope(tmp_path, 2)
    x = _rng(9).normal(size=(40, D)) * 2
    for layer, a in enumerate(arrays):
        got = read_published(tmp_path / f"layer_{layer}" / "width_16k" / "average_l0_54" / "params.npz", dtype=torch.float64)
        assert got.unit.layer == layer and got.unit.input_hook == "ln2.hook_normalized" and got.unit.output_hook == "hook_mlp_out"
        acts, out = _reference(a, x)
        xt = torch.from_numpy(x)
        assert ((acts > 0) & (a["threshold"] < 0)).any()  # the relu inside the JumpReLU matters here
        np.testing.assert_allclose(_np(got.transcoder.encode(xt)), acts, atol=1e-10)
        np.testing.assert_allclose(_np(got.transcoder(xt)), out, atol=1e-10)


def test_gemma_scope_input_gain_folds_exactly(tmp_path):
    """Folded with the pre-MLP gain, the transcoder fed the MLP's input ``n * g`` computes what
    Gemma Scope's computes on the gain-free ``n``."""
    a = write_gemma_scope(tmp_path, 1)[0]
    tc = read_published(tmp_path / "layer_0" / "width_16k" / "average_l0_54" / "params.npz", dtype=torch.float64).transcoder
    gain = torch.from_numpy(_rng(3).uniform(0.5, 2.0, size=D))
    n = _rng(4).normal(size=(30, D))
    folded = fold_input_gain(tc, gain)
    np.testing.assert_allclose(_np(folded(torch.from_numpy(n) * gain)), _reference(a, n)[1], atol=1e-10)
    with pytest.raises(InvalidInputError, match="non-zero"):
        fold_input_gain(tc, torch.zeros(D))


@pytest.mark.parametrize("affine", [True, False])
def test_gemma_scope_2_reads_as_googles_tutorial(tmp_path, affine):
    arrays = write_gemma_scope_2(tmp_path, 3, affine=affine)
    tset = read_transcoders(tmp_path / "transcoder_all", dtype=torch.float64)
    assert (tset.input_hook, tset.output_hook, tset.model_name) == ("mlp.hook_in", "hook_mlp_out", "google/gemma-3-270m")
    x = _rng(5).normal(size=(40, D)) * 2
    for tc, a in zip(tset.transcoders, arrays, strict=True):
        assert tc.spec.skip == affine
        acts, out = _reference(a, x, a.get("affine_skip_connection"))
        np.testing.assert_allclose(_np(tc.encode(torch.from_numpy(x))), acts, atol=1e-5)
        np.testing.assert_allclose(_np(tc(torch.from_numpy(x))), out, atol=1e-5)


SAELENS_ARCHS = ["standard", "jumprelu", "topk", "transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder"]


def _saelens_reference(arch: str, a: dict[str, np.ndarray], x: np.ndarray, k: int = 3, rescale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """SAELens's encode/forward for ``arch``, from the raw arrays (sae_lens/saes/*.py)."""
    transcoder = "transcoder" in arch
    pre = (x if transcoder else x - a["b_dec"]) @ a["W_enc"] + a["b_enc"]
    norm = np.linalg.norm(a["W_dec"], axis=-1)
    if arch == "topk":
        pre = pre * norm if rescale else pre
        keep = np.zeros_like(pre, dtype=bool)
        np.put_along_axis(keep, np.argsort(-pre, axis=-1)[:, :k], True, axis=-1)
        acts = np.maximum(pre, 0) * keep
    elif "jumprelu" in arch:
        acts = np.maximum(pre, 0) * (pre > a["threshold"])
    else:
        acts = np.maximum(pre, 0)
    out = (acts / norm if rescale else acts) @ a["W_dec"] + a["b_dec"]
    return acts, out + x @ a["W_skip"].T if "skip" in arch else out


@pytest.mark.parametrize("arch", SAELENS_ARCHS)
def test_saelens_saves_read_as_saelens_computes(tmp_path, arch):
    a = write_saelens(tmp_path / "sae", arch, layer=2)
    got = read_published(tmp_path / "sae", dtype=torch.float64)
    transcoder = "transcoder" in arch
    assert got.unit.kind == ("transcoder" if transcoder else "sae") and got.unit.layer == 2
    assert (got.unit.input_hook, got.unit.output_hook) == ("mlp.hook_in", "hook_mlp_out" if transcoder else "mlp.hook_in")
    x = _rng(6).normal(size=(40, D)) * 2
    acts, out = _saelens_reference(arch, a, x)
    np.testing.assert_allclose(_np(got.transcoder.encode(torch.from_numpy(x))), acts, atol=1e-5)
    np.testing.assert_allclose(_np(got.transcoder(torch.from_numpy(x))), out, atol=1e-5)


def test_saelens_topk_rescaled_by_decoder_norm_folds_exactly(tmp_path):
    a = write_saelens(tmp_path / "sae", "topk", layer=0, rescale_acts_by_decoder_norm=True)
    got = read_published(tmp_path / "sae", dtype=torch.float64).transcoder
    x = _rng(7).normal(size=(40, D)) * 2
    acts, out = _saelens_reference("topk", a, x, rescale=True)
    np.testing.assert_allclose(_np(got.encode(torch.from_numpy(x))), acts, atol=1e-5)
    np.testing.assert_allclose(_np(got(torch.from_numpy(x))), out, atol=1e-5)


@pytest.fixture(scope="module")
def sae_lens():
    """sae-lens's own classes, or a skip (install with ``pip install -e .[published-tests]``).

    sae-lens 6.51's package ``__init__`` imports TransformerLens 2 modules that this project's
    TransformerLens 4 no longer has (``transformer_lens.HookedTransformer``,
    ``transformer_lens.components``); its SAE classes need only ``HookedRootModule`` (moved in
    TransformerLens 4) and ``HookPoint``. So, where the plain import fails, the classes are
    imported without running the package ``__init__``; afterwards sae-lens's modules and the shim
    are forgotten (:func:`_forget_sae_lens`)."""
    try:
        spec = importlib.util.find_spec("sae_lens")
    except ValueError:  # blocked (sys.modules["sae_lens"] is None)
        spec = None
    if spec is None:
        pytest.skip("sae-lens is not installed")
    before = dict(sys.modules)
    try:
        try:
            importlib.import_module("sae_lens")
        except ImportError:
            for name in [n for n in sys.modules if n == "sae_lens" or n.startswith("sae_lens.")]:
                del sys.modules[name]
            from transformer_lens import HookedRootModule

            shim = types.ModuleType("transformer_lens.HookedTransformer")
            shim.HookedRootModule = HookedRootModule
            shim.scrying_shim = True  # _forget_sae_lens takes out this one, never a real module of that name
            sys.modules.setdefault("transformer_lens.HookedTransformer", shim)
            package = types.ModuleType("sae_lens")
            package.__path__ = list(spec.submodule_search_locations or [])
            package.__version__ = version("sae-lens")
            package.logger = logging.getLogger("sae_lens")
            sys.modules["sae_lens"] = package
        modules = types.SimpleNamespace(**{name: importlib.import_module(f"sae_lens.saes.{name}")
                                           for name in ("sae", "standard_sae", "jumprelu_sae", "topk_sae", "transcoder")})
    except Exception as err:  # any other incompatibility: the hand-written versions still run
        _forget_sae_lens(before)
        pytest.skip(f"sae-lens cannot be imported here ({type(err).__name__}: {err})")
    yield modules
    _forget_sae_lens(before)


def _forget_sae_lens(before: dict) -> None:
    """Take sae-lens's own modules (``sae_lens`` and ``sae_lens.*``) and the fixture's shim (marked
    ``scrying_shim``) out of ``sys.modules``, back to ``before``'s entries for those names, and keep
    every other module imported meanwhile. Restoring the
    whole of ``sys.modules`` would drop what sae-lens pulled in (``torch.distributed``,
    ``torch._dynamo``, ``datasets``), whose import registers process-wide state once (TORCH_LIBRARY
    namespaces, pyarrow extension types): the next test to import them again on that worker then
    failed ("Only a single TORCH_LIBRARY ...", ``ArrowKeyError``), and with it about 190 tests
    of whatever modules that worker ran later."""
    own = [n for n, m in list(sys.modules.items())
           if n == "sae_lens" or n.startswith("sae_lens.") or getattr(m, "__dict__", {}).get("scrying_shim", False)]  # no module __getattr__
    for name in own:
        if name in before:
            sys.modules[name] = before[name]
        else:
            del sys.modules[name]


def test_forgetting_sae_lens_keeps_what_it_imported():
    """The fixture's teardown forgets only sae-lens and its shim: a module it imported on the way
    (here a stand-in) stays, so importing it again does not run it a second time."""
    kept = types.ModuleType("sae_lens_x")  # a name that only starts like sae-lens's, there before
    sys.modules["sae_lens_x"] = kept
    before = dict(sys.modules)
    shim = types.ModuleType("transformer_lens.HookedTransformer")
    shim.scrying_shim = True
    added = {"sae_lens": types.ModuleType("sae_lens"), "sae_lens.saes.sae": types.ModuleType("sae_lens.saes.sae"),
             "transformer_lens.HookedTransformer": shim,
             "transformer_lens.HookedTransformerConfig_test": types.ModuleType("transformer_lens.HookedTransformerConfig_test"),
             "scrying_test_pulled_in_by_sae_lens": types.ModuleType("scrying_test_pulled_in_by_sae_lens")}
    sys.modules.update(added)
    try:
        _forget_sae_lens(before)
        assert [n in sys.modules for n in added] == [False, False, False, True, True]
        assert sys.modules["sae_lens_x"] is kept
        real = types.ModuleType("transformer_lens.HookedTransformer")  # a real module of the shim's name stays
        sys.modules["transformer_lens.HookedTransformer"] = real
        _forget_sae_lens(before)
        assert sys.modules["transformer_lens.HookedTransformer"] is real
    finally:
        for name in [*added, "sae_lens_x"]:
            sys.modules.pop(name, None)


def _saelens_object(m, arch: str, layer: int, seed: int):
    classes = {"standard": (m.standard_sae.StandardSAE, m.standard_sae.StandardSAEConfig),
               "jumprelu": (m.jumprelu_sae.JumpReLUSAE, m.jumprelu_sae.JumpReLUSAEConfig),
               "topk": (m.topk_sae.TopKSAE, m.topk_sae.TopKSAEConfig),
               "transcoder": (m.transcoder.Transcoder, m.transcoder.TranscoderConfig),
               "skip_transcoder": (m.transcoder.SkipTranscoder, m.transcoder.SkipTranscoderConfig),
               "jumprelu_transcoder": (m.transcoder.JumpReLUTranscoder, m.transcoder.JumpReLUTranscoderConfig),
               "jumprelu_skip_transcoder": (m.transcoder.JumpReLUSkipTranscoder, m.transcoder.JumpReLUSkipTranscoderConfig)}
    cls, cfg_cls = classes[arch]
    transcoder = "transcoder" in arch
    hooks = {"hook_name": f"blocks.{layer}.mlp.hook_in", **({"hook_name_out": f"blocks.{layer}.hook_mlp_out"} if transcoder else {})}
    extra = {"d_out": D, "apply_b_dec_to_input": False} if transcoder else ({"k": 3, "rescale_acts_by_decoder_norm": True} if arch == "topk" else {})
    sae = cls(cfg_cls(d_in=D, d_sae=F, metadata=m.sae.SAEMetadata(model_name="tiny", **hooks), **extra))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.rand(p.shape, generator=gen) - 0.3 if name == "threshold" else torch.randn(p.shape, generator=gen))
    return sae.eval()


@pytest.mark.parametrize("arch", SAELENS_ARCHS)
def test_files_sae_lens_itself_saves_read_as_it_computes(tmp_path, sae_lens, arch):
    sae = _saelens_object(sae_lens, arch, layer=1, seed=len(arch))
    sae.save_model(tmp_path / "saved")
    got = read_published(tmp_path / "saved", dtype=torch.float64)
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(8)) * 2
    with torch.no_grad():
        want_acts, want_out = sae.encode(x), sae(x)
    torch.testing.assert_close(got.transcoder.encode(x.double()).float(), want_acts, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.transcoder(x.double()).float(), want_out, atol=1e-5, rtol=1e-5)


def test_a_set_sae_lens_saved_reads_as_a_transcoder_set(tmp_path, sae_lens):
    for layer in range(3):
        _saelens_object(sae_lens, "jumprelu_skip_transcoder", layer, seed=layer).save_model(tmp_path / "set" / f"blocks.{layer}")
    tset = read_transcoders(tmp_path / "set")
    assert (len(tset.transcoders), tset.input_hook, tset.output_hook) == (3, "mlp.hook_in", "hook_mlp_out")


# --------------------------------------------------------------------------- refusals
def _refused(path, needle: str, *needles: str) -> str:
    with pytest.raises(ScryingError) as err:
        read_transcoders(path)
    text = str(err.value)
    assert needle in text and all(n in text for n in needles), text
    assert isinstance(err.value, InvalidInputError)
    return text


def test_wrong_shapes_missing_keys_and_transposed_matrices_are_refused_by_file_and_key(tmp_path):
    write_gemma_scope_2(tmp_path / "t", 1)
    params = tmp_path / "t" / "transcoder_all" / "layer_0_width_16k_l0_small_affine" / "params.safetensors"
    from safetensors.numpy import load_file

    good = load_file(str(params))
    save_file({**good, "w_enc": np.ascontiguousarray(good["w_enc"].T)}, str(params))
    _refused(tmp_path / "t", str(params), "'w_enc'", f"({F}, {D})", f"expected ({D}, {F}) (transposed?)")
    save_file({**good, "b_dec": good["b_dec"][:-1]}, str(params))
    _refused(tmp_path / "t", str(params), "'w_enc'", f"expected ({D - 1}, {F})")
    save_file({k: v for k, v in good.items() if k != "threshold"}, str(params))
    _refused(tmp_path / "t", str(params), "missing ['threshold']")

    write_gemma_scope(tmp_path / "g", 1)
    npz = tmp_path / "g" / "layer_0" / "width_16k" / "average_l0_54" / "params.npz"
    with np.load(npz) as data:
        arrays = dict(data)
    np.savez(npz, **{**arrays, "W_dec": np.ascontiguousarray(arrays["W_dec"].T)})
    with pytest.raises(InvalidInputError, match=r"params\.npz: 'W_dec' has shape \(6, 10\), expected \(10, 6\) \(transposed\?\)"):
        read_published(npz)

    write_saelens(tmp_path / "s" / "a", "jumprelu_transcoder", 0, normalize_activations="layer_norm")
    _refused(tmp_path / "s", "cfg.json", "normalize_activations 'layer_norm'")


def test_an_npz_holding_a_pickle_is_refused_without_unpickling_it(tmp_path):
    marker = tmp_path / "unpickled"

    class Bomb:
        def __reduce__(self):
            return (Path.touch, (marker,))

    write_gemma_scope(tmp_path / "g", 1)
    npz = tmp_path / "g" / "layer_0" / "width_16k" / "average_l0_54" / "params.npz"
    with np.load(npz) as data:
        arrays = dict(data)
    np.savez(npz, **{**arrays, "threshold": np.array([Bomb()] * F, dtype=object)})
    with pytest.raises(InvalidInputError, match="'threshold' has dtype |O"):
        read_transcoders(tmp_path / "g")
    assert not marker.exists()


def test_sets_that_are_not_one_transcoder_per_layer_are_refused(tmp_path):
    write_gemma_scope_2(tmp_path / "gap", 3)
    for file in (tmp_path / "gap" / "transcoder_all" / "layer_1_width_16k_l0_small_affine").iterdir():
        file.unlink()
    _refused(tmp_path / "gap", "layers [0, 2]", "every layer 0..n-1")

    write_gemma_scope(tmp_path / "two", 2)
    write_gemma_scope(tmp_path / "two" / "more", 1, l0=99)  # a second L0 for layer 0 (under more/layer_0)
    _refused(tmp_path / "two", "layer 0 has 2 dictionaries")

    write_gemma_scope(tmp_path / "gs1", 2)
    _refused(tmp_path / "gs1", "without its gain", "fold_input_gain")

    write_gemma_scope_2(tmp_path / "sae", 2, affine=False, kind="sae")
    _refused(tmp_path / "sae", "these are SAEs")

    write_gemma_scope_2(tmp_path / "clt", 1)
    config = tmp_path / "clt" / "transcoder_all" / "layer_0_width_16k_l0_small_affine" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "type": "clt"}))
    _refused(tmp_path / "clt", str(config), "type 'clt'")

    outside = tmp_path / "outside"
    write_gemma_scope_2(outside, 1)
    linked = tmp_path / "linked" / "transcoder_all" / "layer_0"  # files linked out, as the hub's cache does
    linked.mkdir(parents=True)
    for name in ("config.json", "params.safetensors"):
        (linked / name).symlink_to(outside / "transcoder_all" / "layer_0_width_16k_l0_small_affine" / name)
    _refused(tmp_path / "linked", "outside", "Hugging Face cache")


def test_the_hub_is_asked_only_on_request_and_offline_is_a_scrying_error(tmp_path):
    with pytest.raises(ModelLoadError, match="could not download .*'google/gemma-scope-2-270m-pt'.*no network"):
        download_published("google/gemma-scope-2-270m-pt", ["transcoder_all/layer_0_width_16k_l0_small"], tmp_path,
                           endpoint="http://127.0.0.1:9")  # loopback, nothing listening
    with pytest.raises(InvalidInputError, match="OWNER/NAME"):
        download_published("not a repo", ["x"], tmp_path)
    with pytest.raises(InvalidInputError, match="relative folder"):
        download_published("google/x", ["../up"], tmp_path)
    assert main(["transcoders", "download", "bad repo", "x", "--out", str(tmp_path / "o")]) == 2


# --------------------------------------------------------------------------- the model
def test_gemma_scope_2_hook_points_are_scryings_sites(tmp_path):
    """``model.layers.L.pre_feedforward_layernorm.output`` is scrying's ``mlp.hook_in`` and the
    post-feedforward norm's output its ``hook_mlp_out``: read from the Hugging Face modules of
    the same checkpoint, independently of scrying."""
    from transformers import AutoModelForCausalLM

    model = tiny("gemma3", tmp_path)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "gemma3", dtype=torch.float64).eval()
    tokens = torch.tensor([[1, 5, 7, 9, 4, 6]])
    seen = {}
    hooks = [getattr(hf.model.layers[1], name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
             for name in ("pre_feedforward_layernorm", "post_feedforward_layernorm")]
    try:
        with torch.no_grad():
            hf(tokens)
    finally:
        for h in hooks:
            h.remove()
    sites = [Site(Component.MLP_IN, 1), Site(Component.MLP_OUT, 1)]
    with torch.no_grad(), recorded(model, sites) as store:
        model(tokens)
    close = {"rtol": 1e-5, "atol": 1e-6}  # the bridge's norms compute their weight in float32, as HF's do
    torch.testing.assert_close(store[sites[0]], seen["pre_feedforward_layernorm"], **close)
    torch.testing.assert_close(store[sites[1]], seen["post_feedforward_layernorm"], **close)
    with torch.no_grad(), recorded(model, [Site(Component.MLP_RESULT, 1), Site(Component.RESID_MID, 1)]) as other:
        model(tokens)  # the neighbouring sites are far from them: the check tells sites apart
    assert (other[Site(Component.MLP_RESULT, 1)] - seen["post_feedforward_layernorm"]).abs().max() > 0.1
    assert (other[Site(Component.RESID_MID, 1)] - seen["pre_feedforward_layernorm"]).abs().max() > 0.1


def test_scrying_trace_reads_a_gemma_scope_2_download(tmp_path, capsys):
    """The folder a user downloads is what ``--transcoders`` takes; the basis's transcoder output
    at a recorded MLP input equals the raw-array reference; a wrong d_model is refused."""
    model = tiny("gemma3", tmp_path)
    d = model.cfg.d_model
    arrays = write_gemma_scope_2(tmp_path / "gs2", model.cfg.n_layers, d=d)
    html, js = tmp_path / "t.html", tmp_path / "t.json"
    common = ["trace", "t3 t4 t5 t6 t7", "--model", str(tmp_path / "gemma3"), "--no-validate", "--max-features", "20"]
    assert main([*common, "--transcoders", str(tmp_path / "gs2" / "transcoder_all"), "--out", str(html), "--json", str(js)]) == 0
    features = [n for n in Graph.read_json(js).nodes if n.kind == "feature"]
    assert features
    # each feature node's activation is Google's JumpReLU of the recorded MLP input, from the raw arrays
    sites = [Site(Component.MLP_IN, layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad(), recorded(model, sites) as store:
        model(tokenize(model, "t3 t4 t5 t6 t7"))
    for node in features:
        acts = _reference(arrays[node.layer], _np(store[sites[node.layer]][0, node.pos]))[0]
        assert node.activation == pytest.approx(acts[node.feature], rel=1e-4)

    tset = read_transcoders(tmp_path / "gs2" / "transcoder_all", dtype=torch.float64)
    x = store[sites[2]][0].double()
    want = _reference(arrays[2], _np(x), arrays[2]["affine_skip_connection"])[1]
    np.testing.assert_allclose(_np(TranscoderBasis(tset).set.transcoders[2](x)), want, atol=1e-8)

    write_gemma_scope_2(tmp_path / "narrow", model.cfg.n_layers, d=d - 2)
    capsys.readouterr()
    assert main([*common, "--transcoders", str(tmp_path / "narrow" / "transcoder_all"), "--out", str(html), "--json", str(js)]) == 2
    assert f"d_model {d - 2}, the model has d_model {d}" in capsys.readouterr().err


def test_a_set_layout_reports_what_it_found(tmp_path):
    write_gemma_scope_2(tmp_path, 2, affine=False)
    layout = inspect_published(tmp_path)
    assert [u.layer for u in layout.units] == [0, 1] and layout.format == "gemma-scope-2"
    assert [u.spec.skip for u in layout.units] == [False, False] and layout.model_name == "google/gemma-3-270m"
    tset = read_transcoders(tmp_path)
    assert isinstance(tset, TranscoderSet) and tset.n_features == F and tset.input_site(1) == Site(Component.MLP_IN, 1)


# --------------------------------------------------------------------------- whatever the bytes
FUZZ = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 40) | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)
CONFIG_KEYS = {"gs2": ["type", "architecture", "affine_connection", "hf_hook_point_in", "hf_hook_point_out", "width", "model_name"],
               "sl": ["architecture", "d_in", "d_sae", "d_out", "apply_b_dec_to_input", "normalize_activations",
                      "reshape_activations", "metadata", "k", "activation_fn", "rescale_acts_by_decoder_norm"]}
FILES = {"gs": "gs/layer_0/width_16k/average_l0_54/params.npz",
         "gs2-params": "gs2/transcoder_all/layer_0_width_16k_l0_small_affine/params.safetensors",
         "gs2-config": "gs2/transcoder_all/layer_0_width_16k_l0_small_affine/config.json",
         "sl-params": "sl/a/sae_weights.safetensors", "sl-config": "sl/a/cfg.json"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("published")
    write_gemma_scope(root / "gs", 1)
    write_gemma_scope_2(root / "gs2", 1)
    write_saelens(root / "sl" / "a", "jumprelu_skip_transcoder", 0)
    return root


def _read_or_refuse(folder: Path) -> None:
    """Reading returns, or raises a ScryingError; anything else fails the test."""
    for read in (read_transcoders, read_published):
        try:
            read(folder)
        except ScryingError:
            pass


@FUZZ
@given(which=st.sampled_from(sorted(CONFIG_KEYS)), key=st.data(), value=JSON)
def test_fuzzed_configs_are_read_or_refused(pristine, which, key, value):
    name = key.draw(st.sampled_from(CONFIG_KEYS[which]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(pristine / which, Path(tmp) / which))
        config = next(folder.rglob("c*.json"))
        config.write_text(json.dumps({**json.loads(config.read_text()), name: value}))
        _read_or_refuse(folder if which == "sl" else folder / "transcoder_all")


@FUZZ
@given(which=st.sampled_from(sorted(FILES)), cut=st.integers(0, 3000), junk=st.binary(max_size=64), at=st.integers(0, 3000))
def test_fuzzed_bytes_are_read_or_refused(pristine, which, cut, junk, at):
    """A file truncated, or overwritten with junk at some offset (headers included)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(pristine, Path(tmp) / "p"))
        file = root / FILES[which]
        data = file.read_bytes()
        data = data[:cut] if cut < len(data) and not junk else data[:at] + junk + data[at + len(junk):]
        file.write_bytes(data)
        _read_or_refuse(root / FILES[which].split("/")[0])
