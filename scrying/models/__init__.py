"""Model loading: registered names, local directories, GGUF files and hub names."""

from scrying.models.anatomy import Anatomy, anatomy
from scrying.models.loading import LoadConfig, default_cache_dir, load_model, local_hf_dir
from scrying.models.registry import DEFAULT_MODEL, REGISTRY, ModelEntry, SpecKind, resolve_spec

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY",
    "Anatomy",
    "LoadConfig",
    "ModelEntry",
    "SpecKind",
    "anatomy",
    "default_cache_dir",
    "load_model",
    "local_hf_dir",
    "resolve_spec",
]
