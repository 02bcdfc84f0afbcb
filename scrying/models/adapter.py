"""The model adapter: every reach into TransformerBridge internals, in one place.

Instrument code never patches a backend's ``forward`` or reads its private weights; it calls
these functions, which know the bridge's layout (and are tested on Gemma 3, Llama and GPT-2
shaped models):

* :data:`Model` (defined in :mod:`scrying.axes`): the type of every ``model`` parameter.
* running part of a model: :func:`skipped_blocks` (resume at a layer), :func:`read_only_mlp`
  (the last MLP at chosen positions), :func:`final_resid`, :func:`logits_at`,
  :func:`logit_columns`;
* weights and norms: :func:`output_weight` (a head's slice of ``W_O``), :func:`has_post_norm`,
  :func:`post_norm_gain`;
* devices: :func:`model_device`, :func:`to_model`.

Devices: prompt sets, masks and indices stay on the CPU; tokens and residuals are moved to the
model's device where they enter the model (:func:`to_model`), hooks move what they insert to
the activation's device, and per-prompt metric values come back to the CPU.

Phases of :func:`final_resid`, the pass the batched sweep repeats for every ablated layer:

1. **Re-enter** the residual stream at block ``L`` (``start_at_layer``) with blocks ``0..L-1``
   skipped for the duration of the call (TransformerBridge would otherwise run them and
   discard their output), so the clean computation up to ``L`` is reused, not redone.
2. **Stop** after the last block: a hook on its ``resid_post`` raises with the residual, so the
   full-vocabulary unembedding of every position is never computed. Given the read positions,
   the last block's MLP (position-wise) runs only there (:func:`read_only_mlp`): the other
   positions of the last block's output are never read.
3. **Read** logits only where a metric needs them: final norm and unembedding applied to the
   selected rows, in chunks (:func:`logits_at`), or, when the metric needs only a few tokens'
   logits (logit difference), just those columns of the unembedding (:func:`logit_columns`, also
  minus the mean logit over the vocabulary).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import einops
import torch
from jaxtyping import Bool

from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import InvalidInputError
from scrying.sites import Component, HookFn, Site, has_site, hooks


class _Stop(Exception):
    def __init__(self, resid: torch.Tensor) -> None:
        super().__init__("stop after the last block")
        self.resid = resid


@contextlib.contextmanager
def skipped_blocks(model: Model, n: int) -> Iterator[None]:
    """Make blocks ``0..n-1`` the identity for the duration of the block (restored in finally)."""

    def identity(*args: Any, **kwargs: Any) -> Any:
        return args[0] if args else kwargs["hidden_states"]

    patched = list(model.blocks)[:n]
    try:
        for block in patched:
            # object.__setattr__: bridge components forward attribute writes to the HF module.
            object.__setattr__(block, "forward", identity)
        yield
    finally:
        for block in patched:
            vars(block).pop("forward", None)


@contextlib.contextmanager
def read_only_mlp(model: Model, read: Bool[Tensor, "batch pos"]) -> Iterator[None]:
    """Run the last block's MLP at the ``read`` positions only (restored in finally).

    The MLP acts on each position separately, so its output at a read position is unchanged;
    elsewhere it outputs 0, which makes the last block's output wrong there: use only with
    a caller that reads nothing else.
    """
    mlp = model.blocks[-1].mlp
    original = mlp.forward

    def partial(hidden: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if hidden.shape[:2] != read.shape:
            raise InvalidInputError(f"read mask of shape {tuple(read.shape)} for a batch of {tuple(hidden.shape[:2])}")
        out = torch.zeros_like(hidden)
        out[read] = original(hidden[read].unsqueeze(0), *args, **kwargs)[0]
        return out

    try:
        object.__setattr__(mlp, "forward", partial)
        yield
    finally:
        vars(mlp).pop("forward", None)


def model_device(model: Model) -> torch.device:
    return next(model.parameters()).device


def to_model(model: Model, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on the model's device (no copy when it is already there)."""
    return tensor.to(model_device(model))


def final_resid(
    model: Model,
    inputs: Int[Tensor, "batch pos"] | Float[Tensor, "batch pos d_model"],
    *,
    start_layer: int = 0,
    forward: Mapping[Site, HookFn] | None = None,
    read: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos d_model"]:
    """Residual stream after the last block: from tokens, or from ``resid_pre`` of ``start_layer``.

    ``read``: the only positions the caller reads; the result is exact there and not elsewhere
    (the last block's MLP skips the other positions).
    """
    last = Site(Component.RESID_POST, model.cfg.n_layers - 1)

    def stop(act: torch.Tensor, hook: Any) -> None:
        raise _Stop(act)

    sites: list[tuple[Site, HookFn]] = list((forward or {}).items()) + [(last, stop)]
    kwargs: dict[str, Any] = {"return_type": None}
    if inputs.is_floating_point():
        # A residual stream, re-entered at block ``start_layer`` (also block 0: passed as plain
        # ``inputs_embeds`` some architectures would add position embeddings to it again).
        kwargs["start_at_layer"] = start_layer
    elif start_layer:
        raise InvalidInputError("start_layer needs a residual-stream input, not tokens")
    skip = skipped_blocks(model, start_layer) if start_layer else contextlib.nullcontext()
    only = read_only_mlp(model, read) if read is not None else contextlib.nullcontext()
    try:
        with hooks(model, sites), skip, only:
            model(to_model(model, inputs), **kwargs)
    except _Stop as done:
        return done.resid
    raise RuntimeError("the model finished without reaching its last block")  # pragma: no cover


def final_softcap(model: Model) -> float:
    """The final logit softcap (``cfg.output_logits_soft_cap``, Gemma 2); 0 where there is none."""
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0
    return cap if cap > 0 else 0.0


def _softcapped(model: Model, logits: Tensor) -> Tensor:
    cap = final_softcap(model)
    return cap * torch.tanh(logits / cap) if cap else logits


def logits_at(
    model: Model, resid: Float[Tensor, "read d_model"], *, chunk: int = 256
) -> Iterator[Float[Tensor, "chunk d_vocab"]]:
    """Final norm + unembedding of selected residual rows, ``chunk`` rows at a time."""
    for start in range(0, resid.shape[0], chunk):
        rows = resid[start : start + chunk]
        yield _softcapped(model, model.unembed(model.ln_final(rows.unsqueeze(0)))[0])


def last_position_logits(model: Model, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch 1 d_vocab"]:
    """Logits at the last position from the residual stream after the last block: the final
    norm over every position (so hooks on its scale see the whole prompt, as in a full forward
    pass), the unembedding (and any final softcap) at the last position only."""
    return _softcapped(model, model.unembed(model.ln_final(resid)[:, -1:]))


def logit_columns(
    model: Model, resid: Float[Tensor, "read d_model"], columns: Int[Tensor, "read col"], *, demean: bool = False
) -> Float[Tensor, "read col"]:
    """Logits of the tokens ``columns[i]`` at residual row ``i``: final norm, then only those
    rows of the unembedding (the same weights the model's own unembedding applies).

    ``demean``: each logit minus the mean logit over the vocabulary, still without the whole
    vocabulary: the mean logit is the normed row times the unembedding's mean row (plus the mean
    bias), so only the asked columns and one mean row are read (a 262k-token unembedding is
    671 MB; reading it dominates a pass over a few rows). Refused under a final logit softcap,
    where the mean of the logits is not the logit of the mean row."""
    if demean and final_softcap(model):
        raise InvalidInputError(
            f"demeaned logit columns need an uncapped unembedding; this model caps logits at {final_softcap(model):g}"
        )
    unembed = model.unembed.original_component
    normed = model.ln_final(resid.unsqueeze(0))[0]
    weight = unembed.weight[columns]  # read col d_model
    bias = getattr(unembed, "bias", None)
    bias = bias[columns] if bias is not None else None
    if demean:
        mean_row, mean_bias = _unembedding_mean(unembed)
        weight = weight - mean_row
        bias = bias - mean_bias if bias is not None else None
    logits = einops.einsum(normed.to(weight.dtype), weight, "read d, read col d -> read col")
    if bias is not None:
        logits = logits + bias
    return _softcapped(model, logits)


_MEANS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, int, torch.Tensor, torch.Tensor | None]] = weakref.WeakKeyDictionary()


def _unembedding_mean(unembed: torch.nn.Module) -> tuple[Float[Tensor, " d_model"], Float[Tensor, ""] | None]:
    """The unembedding's mean row and mean bias, cached per module (while its weight tensor and
    that tensor's version are the same)."""
    weight = unembed.weight
    bias = getattr(unembed, "bias", None)
    cached = _MEANS.get(unembed)
    if cached is None or cached[:2] != (id(weight), weight._version):
        with torch.no_grad():
            cached = (id(weight), weight._version, weight.mean(0), bias.mean() if bias is not None else None)
        _MEANS[unembed] = cached
    return cached[2], cached[3]


def output_weight(model: Model, layer: int) -> Float[Tensor, "head d_head d_model"]:
    """W_O of ``layer`` split by head, from the bridge's attention output projection."""
    cfg = model.cfg
    o = model.blocks[layer].attn.o
    module = getattr(o, "original_component", o)
    d_in = cfg.n_heads * cfg.d_head
    # nn.Linear stores [out, in]; GPT-2's Conv1D [in, out]. Told apart by the module's type, not by
    # the shape, which is square whenever d_model = n_heads * d_head (GPT-2 itself).
    weight = module.weight.T if isinstance(module, torch.nn.Linear) else module.weight
    if tuple(weight.shape) != (d_in, cfg.d_model):
        raise InvalidInputError(f"layer {layer}: attention output projection {type(module).__name__} has weight "
                                f"{tuple(module.weight.shape)}, expected [n_heads * d_head, d_model] = {(d_in, cfg.d_model)} (or its transpose for nn.Linear)")
    return einops.rearrange(weight, "(head d_head) d_model -> head d_head d_model", head=cfg.n_heads)


def has_post_norm(model: Model) -> bool:
    """Whether attention outputs pass a post-norm before the residual stream (Gemma)."""
    return has_site(model, Site(Component.LN1_POST_IN, 0))


def post_norm_gain(model: Model, layer: int) -> Float[Tensor, " d_model"]:
    """The gain of the attention post-norm (up to one global factor): the norm of a ones vector.

    Any global factor is absorbed by a caller that fits the per-position scale by least squares
    (:func:`scrying.circuits.nodes.head_outputs`).
    """
    norm = model.blocks[layer].ln1_post.original_component
    param = next(model.parameters())
    with torch.no_grad():
        return norm(torch.ones(1, 1, model.cfg.d_model, dtype=param.dtype, device=param.device))[0, 0]


def _norm_gain(model: Model, norm: Any) -> Float[Tensor, " d_model"]:
    """A norm's per-dimension gain: its weight for LayerNorm, ``norm(ones)`` for RMSNorm (which
    folds Gemma's ``1 + w`` convention in)."""
    if str(getattr(model.cfg, "normalization_type", "RMS")).startswith("LN"):
        return norm.original_component.weight
    param = next(model.parameters())
    with torch.no_grad():
        return norm(torch.ones(1, 1, model.cfg.d_model, dtype=param.dtype, device=param.device))[0, 0]


def mlp_module(model: Model, layer: int) -> torch.nn.Module:
    """Block ``layer``'s MLP as a module called on its input (``mlp.hook_in``: after the pre-MLP
    norm) and returning its output (``mlp.hook_out``: before any post-norm); the model's hooks on
    it (``mlp.hook_pre`` ...) run when it is called."""
    return model.blocks[layer].mlp


def mlp_input_norm(model: Model, layer: int) -> torch.nn.Module:
    """Block ``layer``'s pre-MLP norm (``ln2``) as a module, its ``hook_scale`` live when called."""
    return model.blocks[layer].ln2


@torch.no_grad()
def mlp_output_rows(model: Model, layer: int, neurons: list[int]) -> Float[Tensor, "n d_model"]:
    """What each of ``neurons`` of ``layer``'s MLP writes per unit activation: its column of the
    MLP's output projection (``mlp.out``: an ``nn.Linear`` ``[d_model, d_mlp]``, or GPT-2's
    ``Conv1D`` ``[d_mlp, d_model]``), as rows."""
    mlp = model.blocks[layer].mlp
    if not hasattr(mlp, "out"):
        raise InvalidInputError(f"layer {layer}: no MLP output projection (mlp.out) found")
    out = mlp.out.original_component
    if isinstance(out, torch.nn.Linear):
        return out.weight[:, neurons].T
    weight = out.weight  # GPT-2's Conv1D: [d_mlp, d_model], x @ W
    if tuple(weight.shape) != (model.cfg.d_mlp, model.cfg.d_model):
        raise InvalidInputError(f"layer {layer}: MLP output projection {type(out).__name__} has weight {tuple(weight.shape)}, "
                                f"expected [d_mlp, d_model] = {(model.cfg.d_mlp, model.cfg.d_model)} or an nn.Linear")
    return weight[neurons]


@torch.no_grad()
def mlp_output_logits(model: Model, layer: int, vectors: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
    """Direct logit direction of vectors written at ``layer``'s MLP output (``mlp.hook_out``):
    the MLP post-norm's gain where the block has one, the final norm's gain (LayerNorm also
    centres), then the unembedding. The norms' scales (positive, one per position) are left
    out, so compare tokens within a row, not rows with each other."""
    v = vectors.to(next(model.parameters()).dtype)
    if has_site(model, Site(Component.LN2_POST_SCALE, layer)):
        v = v * _norm_gain(model, model.blocks[layer].ln2_post)
    if str(getattr(model.cfg, "normalization_type", "RMS")).startswith("LN"):
        v = v - v.mean(-1, keepdim=True)
    v = v * _norm_gain(model, model.ln_final)
    weight = model.unembed.original_component.weight  # d_vocab d_model
    return einops.einsum(v, weight, "n d, vocab d -> n vocab")
