"""The anatomy of a loaded model: its shape, attention types, and hook sites per part.

The ``seed_name`` column carries the names the user's source text (the *Lexicon, Volume 4*)
gives the parts: Scribe's Sigils (tokenizer), Soul's Anchor (residual stream), Regulating
Humors (normalization), Council of Selves (multi-head attention), Alchemical Digestion (MLP).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scrying.axes import Model
from scrying.sites import Component, Site, has_site, hook_name, n_kv_heads

_PARTS: list[tuple[str, str, list[Component]]] = [
    ("tokenizer + embedding", "Scribe's Sigils", [Component.EMBED]),
    (
        "residual stream",
        "Soul's Anchor",
        [Component.RESID_PRE, Component.RESID_MID, Component.RESID_POST],
    ),
    (
        "normalization",
        "Regulating Humors",
        [
            Component.LN1_SCALE,
            Component.LN1_POST_SCALE,
            Component.LN2_SCALE,
            Component.LN2_POST_SCALE,
            Component.Q_NORM_SCALE,
            Component.K_NORM_SCALE,
            Component.FINAL_SCALE,
        ],
    ),
    (
        "multi-head attention",
        "Council of Selves",
        [
            Component.Q,
            Component.K,
            Component.V,
            Component.SCORES,
            Component.PATTERN,
            Component.Z,
            Component.ATTN_OUT,
        ],
    ),
    (
        "MLP",
        "Alchemical Digestion",
        [Component.MLP_PRE, Component.MLP_POST, Component.MLP_OUT],
    ),
    ("unembedding", "", [Component.LOGITS]),
]


@dataclass(frozen=True)
class Anatomy:
    """Shape facts and hook sites of a model."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    attention_types: tuple[str, ...]
    sliding_window: int | None
    n_params: int
    parts: pd.DataFrame  # columns: part, seed_name, component, hook

    def summary(self) -> pd.DataFrame:
        """Key/value table of the shape facts."""
        kinds = sorted(set(self.attention_types))
        counts = ", ".join(f"{self.attention_types.count(k)} {k}" for k in kinds)
        rows = [
            ("model", self.name),
            ("parameters", f"{self.n_params:,}"),
            ("layers", self.n_layers),
            ("d_model", self.d_model),
            ("attention heads (query / key-value)", f"{self.n_heads} / {self.n_kv_heads}"),
            ("d_head", self.d_head),
            ("d_mlp", self.d_mlp),
            ("vocabulary", f"{self.d_vocab:,}"),
            ("context", f"{self.n_ctx:,}"),
            ("attention types", counts),
            ("sliding window", self.sliding_window if self.sliding_window else "-"),
        ]
        return pd.DataFrame(rows, columns=["property", "value"])


def anatomy(model: Model, name: str = "") -> Anatomy:
    """Describe ``model`` (a ``TransformerBridge``)."""
    cfg = model.cfg
    hf_cfg = getattr(getattr(model, "original_model", None), "config", None)
    layer_types = getattr(cfg, "layer_types", None) or getattr(hf_cfg, "layer_types", None)
    types = tuple(layer_types) if layer_types else ("full_attention",) * cfg.n_layers
    window = getattr(hf_cfg, "sliding_window", None) if any("sliding" in t for t in types) else None
    rows = []
    for part, seed_name, components in _PARTS:
        for component in components:
            site = Site(component, 0 if _per_layer(component) else None)
            if not has_site(model, site):
                continue
            shown = hook_name(site).replace("blocks.0.", "blocks.{L}.")
            rows.append((part, seed_name, component.value, shown))
    return Anatomy(
        name=name or str(getattr(cfg, "model_name", "")),
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        n_kv_heads=n_kv_heads(model),
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp,
        d_vocab=cfg.d_vocab,
        n_ctx=cfg.n_ctx,
        attention_types=types,
        sliding_window=window,
        n_params=sum(p.numel() for p in model.original_model.parameters()),
        parts=pd.DataFrame(rows, columns=["part", "seed_name", "component", "hook"]),
    )


def _per_layer(component: Component) -> bool:
    return component not in (Component.EMBED, Component.FINAL_SCALE, Component.LOGITS)
