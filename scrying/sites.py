"""Typed hook sites: the one place that spells TransformerLens hook names.

A :class:`Site` names *what* to read or write (a component, at a layer, optionally one head);
:func:`hook_name` turns it into the backend's hook name, and :func:`hooks` attaches functions
to sites for the duration of a ``with`` block, removing them in ``finally``. No other module
builds hook-name strings.

Shapes at each site (TransformerBridge, axes as in :mod:`scrying.axes`):

==================  ======================================  =============================
component           hook                                    shape
==================  ======================================  =============================
``embed``           ``hook_embed``                          batch pos d_model
``resid_pre``       ``blocks.L.hook_resid_pre``             batch pos d_model
``resid_mid``       ``blocks.L.hook_resid_mid``             batch pos d_model
``resid_post``      ``blocks.L.hook_resid_post``            batch pos d_model
``attn_out``        ``blocks.L.hook_attn_out``              batch pos d_model
``mlp_out``         ``blocks.L.hook_mlp_out``               batch pos d_model
``q`` / ``z``       ``blocks.L.attn.hook_q`` / ``hook_z``   batch pos head d_head
``k`` / ``v``       ``blocks.L.attn.hook_k`` / ``hook_v``   batch pos kv_head d_head
``scores``          ``blocks.L.attn.hook_attn_scores``      batch head pos_q pos_k
``pattern``         ``blocks.L.attn.hook_pattern``          batch head pos_q pos_k
``mlp_pre``         ``blocks.L.mlp.hook_pre``               batch pos d_mlp
``mlp_post``        ``blocks.L.mlp.hook_post``              batch pos d_mlp
``mlp_in``          ``blocks.L.mlp.hook_in``                batch pos d_model
``mlp_result``      ``blocks.L.mlp.hook_out``               batch pos d_model
``ln1_scale`` ...   ``blocks.L.ln1.hook_scale``             batch pos 1
``final_scale``     ``ln_final.hook_scale``                 batch pos 1
``ln1_in``          ``blocks.L.ln1.hook_in``                batch pos d_model
``ln2_in``          ``blocks.L.ln2.hook_in``                batch pos d_model
``ln1_post_in``     ``blocks.L.ln1_post.hook_in``           batch pos d_model
``final_in``        ``ln_final.hook_in``                    batch pos d_model
==================  ======================================  =============================
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from scrying.axes import Model
from scrying.errors import SiteError


class Component(StrEnum):
    """A part of the model whose activation can be read or patched."""

    EMBED = "embed"
    RESID_PRE = "resid_pre"
    RESID_MID = "resid_mid"
    RESID_POST = "resid_post"
    ATTN_OUT = "attn_out"
    MLP_OUT = "mlp_out"
    Q = "q"
    K = "k"
    V = "v"
    Z = "z"
    SCORES = "scores"
    PATTERN = "pattern"
    MLP_PRE = "mlp_pre"
    MLP_PRE_LINEAR = "mlp_pre_linear"
    MLP_POST = "mlp_post"
    MLP_IN = "mlp_in"  # the MLP module's input (after ln2)
    MLP_RESULT = "mlp_result"  # the MLP module's output (before a post-norm, where there is one)
    LN1_SCALE = "ln1_scale"
    LN2_SCALE = "ln2_scale"
    LN1_POST_SCALE = "ln1_post_scale"
    LN2_POST_SCALE = "ln2_post_scale"
    Q_NORM_SCALE = "q_norm_scale"
    K_NORM_SCALE = "k_norm_scale"
    FINAL_SCALE = "final_scale"
    LOGITS = "logits"
    LN1_IN = "ln1_in"
    LN2_IN = "ln2_in"
    LN1_POST_IN = "ln1_post_in"
    FINAL_IN = "final_in"


_GLOBAL: dict[Component, str] = {
    Component.EMBED: "hook_embed",
    Component.FINAL_SCALE: "ln_final.hook_scale",
    Component.LOGITS: "unembed.hook_out",
    Component.FINAL_IN: "ln_final.hook_in",
}

_PER_LAYER: dict[Component, str] = {
    Component.RESID_PRE: "hook_resid_pre",
    Component.RESID_MID: "hook_resid_mid",
    Component.RESID_POST: "hook_resid_post",
    Component.ATTN_OUT: "hook_attn_out",
    Component.MLP_OUT: "hook_mlp_out",
    Component.Q: "attn.hook_q",
    Component.K: "attn.hook_k",
    Component.V: "attn.hook_v",
    Component.Z: "attn.hook_z",
    Component.SCORES: "attn.hook_attn_scores",
    Component.PATTERN: "attn.hook_pattern",
    Component.MLP_PRE: "mlp.hook_pre",
    Component.MLP_PRE_LINEAR: "mlp.hook_pre_linear",
    Component.MLP_POST: "mlp.hook_post",
    Component.MLP_IN: "mlp.hook_in",
    Component.MLP_RESULT: "mlp.hook_out",
    Component.LN1_SCALE: "ln1.hook_scale",
    Component.LN2_SCALE: "ln2.hook_scale",
    Component.LN1_POST_SCALE: "ln1_post.hook_scale",
    Component.LN2_POST_SCALE: "ln2_post.hook_scale",
    Component.Q_NORM_SCALE: "attn.q_norm.hook_scale",
    Component.K_NORM_SCALE: "attn.k_norm.hook_scale",
    Component.LN1_IN: "ln1.hook_in",
    Component.LN2_IN: "ln2.hook_in",
    Component.LN1_POST_IN: "ln1_post.hook_in",
}

#: Components whose activation has a query-head axis, and where it is.
HEAD_AXIS: dict[Component, int] = {
    Component.Q: 2,
    Component.Z: 2,
    Component.SCORES: 1,
    Component.PATTERN: 1,
}
#: Components whose activation has a key/value-head axis (grouped-query attention).
KV_HEAD_AXIS: dict[Component, int] = {Component.K: 2, Component.V: 2}


@dataclass(frozen=True, slots=True)
class Site:
    """Where in the model: a component, its layer (``None`` for embed/final), optionally a head."""

    component: Component | str  # a Component, or its string value
    layer: int | None = None
    head: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "component", Component(self.component))
        if self.component in _GLOBAL and self.layer is not None:
            raise SiteError(f"site {self.component.value!r} has no layer, got layer={self.layer}")
        if self.component in _PER_LAYER and self.layer is None:
            raise SiteError(f"site {self.component.value!r} needs a layer")
        if self.head is not None and self.component not in HEAD_AXIS | KV_HEAD_AXIS:
            raise SiteError(f"site {self.component.value!r} has no head axis, got head={self.head}")

    def __str__(self) -> str:
        parts = [self.component.value]
        if self.layer is not None:
            parts.append(f"L{self.layer}")
        if self.head is not None:
            parts.append(f"H{self.head}")
        return ".".join(parts)


def hook_name(site: Site) -> str:
    """The TransformerBridge hook name of ``site`` (the head, if any, is not part of it)."""
    if site.component in _GLOBAL:
        return _GLOBAL[site.component]
    return f"blocks.{site.layer}.{_PER_LAYER[site.component]}"


def check_site(model: Model, site: Site) -> None:
    """Raise :class:`SiteError` naming the site if ``model`` has no such layer, head or hook."""
    cfg = model.cfg
    if site.layer is not None and not 0 <= site.layer < cfg.n_layers:
        raise SiteError(f"layer {site.layer} out of range: model has layers 0..{cfg.n_layers - 1}")
    if site.head is not None:
        n = cfg.n_heads if site.component in HEAD_AXIS else n_kv_heads(model)
        if not 0 <= site.head < n:
            raise SiteError(
                f"head {site.head} out of range at {site.component.value}: model has heads 0..{n - 1}"
            )
    if hook_name(site) not in _hook_names(model):
        raise SiteError(f"model has no hook for site {site} (looked for {hook_name(site)!r})")


def has_site(model: Model, site: Site) -> bool:
    """Whether ``model`` exposes ``site`` (e.g. Gemma's post-norms exist, GPT-2's do not)."""
    return hook_name(site) in _hook_names(model)


_HOOK_NAMES: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _hook_names(model: Model) -> frozenset[str]:
    """The model's hook names, read once per model: the bridge rebuilds ``hook_dict`` (with its
    aliases) on every access, ~0.5 ms each, and a graph build checks hundreds of sites."""
    names = _HOOK_NAMES.get(model)
    if names is None:
        names = _HOOK_NAMES[model] = frozenset(model.hook_dict)
    return names


def n_kv_heads(model: Model) -> int:
    """Number of key/value heads (``n_heads`` unless the model uses grouped-query attention)."""
    return getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads


HookFn = Callable[..., Any]


@contextlib.contextmanager
def hooks(
    model: Model,
    forward: Mapping[Site, HookFn] | list[tuple[Site, HookFn]] = (),
    backward: Mapping[Site, HookFn] | list[tuple[Site, HookFn]] = (),
) -> Iterator[Any]:
    """Attach hook functions to sites for the duration of the block; always removed on exit.

    Hook functions take ``(activation, hook)`` and return a replacement or ``None``.
    """
    fwd = list(forward.items()) if isinstance(forward, Mapping) else list(forward)
    bwd = list(backward.items()) if isinstance(backward, Mapping) else list(backward)
    for site, _ in fwd + bwd:
        check_site(model, site)
    # TransformerBridge.hooks removes exactly the hooks it added in its own ``finally``.
    with model.hooks(
        fwd_hooks=[(hook_name(s), f) for s, f in fwd],
        bwd_hooks=[(hook_name(s), f) for s, f in bwd],
    ):
        yield model


def capture(key: Any, store: dict[Any, Any]) -> HookFn:
    """A hook that keeps the activation (attached, not a copy) in ``store[key]`` and changes
    nothing: for hooks that read another site's live value later in the same pass."""

    def fn(act: Any, hook: Any) -> None:
        store[key] = act

    return fn


@contextlib.contextmanager
def recorded(model: Model, sites: Iterable[Site], *, clone: bool = False) -> Iterator[dict[Site, Any]]:
    """Record the activation at each site (detached; ``clone`` when a later in-place hook may
    change it) into the dict yielded, filled as the model runs inside the block."""
    store: dict[Site, Any] = {}

    def keep(site: Site) -> HookFn:
        def fn(act: Any, hook: Any) -> None:
            store[site] = act.detach().clone() if clone else act.detach()

        return fn

    with hooks(model, [(site, keep(site)) for site in sites]):
        yield store
