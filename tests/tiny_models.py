"""Tiny random models of each supported architecture (float64), saved as local HF directories."""

from pathlib import Path

import torch

from scrying.models import LoadConfig, load_model
from scrying.toys.train import ToyModelConfig, _save, build_hf_model
from scrying.toys.vocab import build_tokenizer

ARCHS = ("gemma3", "llama", "gpt2")


def tiny(arch: str, tmp: Path, *, n_layers: int = 3, n_heads: int = 4):
    """A random ``arch`` model with perturbed norm weights (so norm scales matter), float64."""
    tokenizer = build_tokenizer(16)
    config = ToyModelConfig(arch=arch, d_model=16, n_heads=n_heads, d_mlp=8, n_layers=n_layers, n_ctx=32)
    hf = build_hf_model(config, len(tokenizer), seed=1)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2)
        for name, param in hf.named_parameters():
            if "norm" in name or "ln" in name:
                param.add_(0.3 * torch.randn(param.shape, generator=gen))
    _save(hf.eval(), tokenizer, tmp / arch)
    return load_model(str(tmp / arch), LoadConfig(dtype="float64"))
