"""Turn a GGUF file into a cached Hugging Face directory (fp32 safetensors + tokenizer).

Phases:

1. **Key** the cache by the GGUF's sha256 (the packaged default's hash is known in advance).
2. **Convert** (first time only, ~1 minute for Gemma 3 270M): transformers >= 5 reads the GGUF
   (``gguf_file=``) and dequantizes Q4_K/Q6_K/Q5_0/Q8_0 tensors to fp32. Its loader undoes
   llama.cpp's ``1 + w`` storage of Gemma norm weights. The resulting config lacks
   ``architectures`` and carries a ``quantization_config`` that TransformerLens rejects: we fix
   both. The tokenizer is built from the GGUF vocabulary (transformers 4.57 got this wrong for
   Gemma 3; >= 5 is right) and saved beside the weights, since TransformerLens re-opens the
   tokenizer by path.
3. **Publish** atomically (write to a temporary directory, then rename), so an interrupted
   conversion never leaves a half-written cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from scrying.cache_lock import entry_lock
from scrying.errors import ModelLoadError

logger = logging.getLogger(__name__)

_ARCHITECTURES = {
    "gemma3_text": "Gemma3ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma": "GemmaForCausalLM",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
_MARKER = "scrying-complete"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def converted_dir(cache_dir: Path, digest: str) -> Path:
    """Where the conversion of the GGUF whose sha256 is ``digest`` lives in the cache."""
    return cache_dir / "gguf" / digest[:24]


def is_converted(cache_dir: Path, digest: str) -> bool:
    """Whether that conversion is complete (its marker is written last)."""
    return (converted_dir(cache_dir, digest) / _MARKER).is_file()


def known_gguf_dir(digest: str, cache_dir: Path, gguf_file: Callable[[], Path]) -> Path:
    """The converted directory of a GGUF whose sha256 is known in advance (a packaged model):
    from the cache without touching the GGUF, else ``gguf_file()`` (assembling it) converted."""
    if is_converted(cache_dir, digest):
        return converted_dir(cache_dir, digest)
    with entry_lock(converted_dir(cache_dir, digest)):  # another process may be converting it
        if is_converted(cache_dir, digest):
            return converted_dir(cache_dir, digest)
        return _convert_locked(gguf_file(), cache_dir, digest)


def cached_hf_dir(gguf_path: Path, cache_dir: Path, *, sha256: str | None = None) -> Path:
    """The Hugging Face directory converted from ``gguf_path``, converting it on first use."""
    return known_gguf_dir(sha256 or sha256_file(gguf_path), cache_dir, lambda: gguf_path)


def _convert_locked(gguf_path: Path, cache_dir: Path, digest: str) -> Path:
    """Convert into a staging folder, then publish it by one rename (the entry's lock held)."""
    target = converted_dir(cache_dir, digest)
    logger.warning(
        "first load of %s: converting to fp32 safetensors in %s (about a minute, once)",
        gguf_path.name,
        target,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=target.parent))
    try:
        _convert(gguf_path, staging)
        (staging / _MARKER).write_text(f"{gguf_path.name}\n{digest}\n")
        if target.exists():  # a stale, unmarked entry from an older interrupted run
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        raise ModelLoadError(
            f"could not read GGUF file {str(gguf_path)!r} with transformers: {err}"
        ) from err
    config = model.config
    if not getattr(config, "architectures", None):
        arch = _ARCHITECTURES.get(config.model_type)
        if arch is None:
            raise ModelLoadError(
                f"GGUF {str(gguf_path)!r} has model type {config.model_type!r}, which scrying "
                f"cannot map to a causal-LM class; known: {', '.join(sorted(_ARCHITECTURES))}"
            )
        config.architectures = [arch]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model.hf_quantizer = None  # weights are plain fp32 now; allow save_pretrained
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    record_bos_setting(gguf_path, out_dir)


def record_bos_setting(gguf_path: Path, out_dir: Path) -> None:
    """Copy the GGUF's ``tokenizer.ggml.add_bos_token`` into the saved ``tokenizer_config.json``
    as ``add_bos_token`` (transformers' conversion drops it), where the loader reads it."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.add_bos_token")
    if field is None or not field.data:
        return
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["add_bos_token"] = bool(field.parts[field.data[0]][0])
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
