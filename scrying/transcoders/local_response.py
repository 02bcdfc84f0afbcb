"""How well each layer's replacement responds to a small change of the MLP's input, as the
frozen local replacement model uses it.

A graph's interventions travel through every later layer's *response*: in the frozen model a
transcoder answers a change ``v`` of its input ``x`` with its frozen-mask Jacobian,

    ``J_tc(x) v = ((v @ W_enc.T) * mask(x)) @ W_dec + v @ W_skip.T``

(the features active on ``x`` move linearly; the others stay off), and the neuron basis answers
with its frozen nonlinearity (a gated MLP's gate ``act(gate(x))`` held, the up projection live;
a plain MLP's clean slope ``act(pre) / pre``). The real MLP answers with its Jacobian
``J_mlp(x) v``. This module measures, per layer, the relative squared error of each basis's
response,

    ``error = sum |J_mlp v - J_basis v|^2 / sum |J_mlp v|^2``

over rows of MLP input ``x`` (``mlp.hook_in``, positions past the first: sets that read and write
the MLP module itself, as the recipe's do; others are refused) and
directions ``v``: 0 is the MLP's own response, 1 is no better than answering 0. Low
reconstruction error (FVU) does not imply a low response error: a transcoder is trained on
outputs, not on how the outputs move.

* **Rows**: ``rows`` evenly spaced rows of the windows' positions past the first.
* **Directions** (``LocalResponseConfig.directions_from``), each scaled to unit length:

  - ``"decoder"`` (default): what a graph's intervention moves. Per row, ``directions`` features
    active on that row at earlier layers (a layer drawn uniformly, then one of its active
    features), each one's decoder row carried into this layer's MLP input by the input norm with
    its scale frozen at the row (a Jacobian-vector product of the block's ``ln2``, as the frozen
    model has it). Layer 0 has no earlier features: its row of the report is NaN.
  - ``"data"``: differences of other rows' inputs (row ``i`` paired with rows drawn with
    ``seed``): changes shaped like the MLP's inputs vary on this text. The reconstruction
    objective covers these directions; a graph's interventions need not lie along them.
* **MLP response**: ``torch.autograd.functional.jvp`` of the model's own MLP module at ``x``
  (exact, any architecture), and of the same module with the neuron basis's freezing as hooks
  (:data:`~scrying.sites.Component.MLP_PRE` held for a gated MLP; ``MLP_POST`` as ``pre`` times
  its clean slope otherwise).
* **Columns** (one row per layer): ``transcoder_error``, ``skip_only_error`` (the skip
  connection alone answering: what the active features add), ``neuron_error`` (the neuron
  basis's frozen response), ``rows``, ``directions``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import torch

from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import ConfigError, InvalidInputError
from scrying.models.adapter import final_resid, mlp_input_norm, mlp_module
from scrying.sites import Component, Site, capture, has_site, hooks, recorded
from scrying.transcoders.files import TranscoderSet
from scrying.transcoders.transcoder import Transcoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LocalResponseConfig:
    """``rows`` MLP-input rows per layer and ``directions`` changes per row, taken as
    ``directions_from`` says (module docstring); ``seed`` draws them; ``chunk``: rows per
    Jacobian-vector product (memory); ``layers``: the layers reported."""

    rows: int = 256
    directions: int = 8
    directions_from: str = "decoder"  # or "data" (module docstring)
    seed: int = 0
    chunk: int = 64
    layers: tuple[int, ...] | None = None  # the layers to report (default: every one)

    def __post_init__(self) -> None:
        for name in ("rows", "directions", "chunk"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LocalResponseConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.directions_from not in ("decoder", "data"):
            raise ConfigError(f"LocalResponseConfig.directions_from must be 'decoder' or 'data', got {self.directions_from!r}")


def transcoder_response(
    tc: Transcoder, x: Float[Tensor, "row d_model"], v: Float[Tensor, "row direction d_model"]
) -> Float[Tensor, "row direction d_model"]:
    """The frozen-mask response ``J_tc(x) v`` of one transcoder (its mask at ``x``), in ``x``'s dtype."""
    tc = tc.detached()
    mask = tc.mask(tc.pre_activations(x))  # [row feature]
    moved = torch.einsum("rvd,fd->rvf", v.to(tc.dtype), tc.W_enc) * mask[:, None]
    out = torch.einsum("rvf,fd->rvd", moved, tc.W_dec)
    if tc.W_skip is not None:
        out = out + skip_response(tc, v)
    return out.to(x.dtype)


def skip_response(tc: Transcoder, v: Float[Tensor, "row direction d_model"]) -> Float[Tensor, "row direction d_model"]:
    """``v @ W_skip.T`` (zeros without a skip connection): the skip connection's response."""
    if tc.W_skip is None:
        return torch.zeros_like(v)
    return torch.einsum("rvi,oi->rvo", v.to(tc.dtype), tc.W_skip.detach()).to(v.dtype)


def mlp_response(
    model: Model, layer: int, x: Float[Tensor, "row d_model"], v: Float[Tensor, "row direction d_model"], *, frozen: bool = False
) -> Float[Tensor, "row direction d_model"]:
    """``J_mlp(x) v`` of the model's MLP at ``layer`` (``frozen``: with the neuron basis's
    nonlinearity held at ``x``), by one Jacobian-vector product over rows x directions."""
    rows, directions, d = v.shape
    xs = x[:, None].expand(rows, directions, d).reshape(1, rows * directions, d)
    mlp = mlp_module(model, layer)
    with hooks(model, _freezing(model, layer) if frozen else []):
        _, out = torch.autograd.functional.jvp(mlp, xs, v.reshape(1, rows * directions, d))
    return out.reshape(rows, directions, d)


def _freezing(model: Model, layer: int) -> list:
    """Hooks holding the neuron basis's nonlinearity at its clean value (as in
    :class:`~scrying.attribution.basis.NeuronBasis`): the gate's activation of a gated MLP, else
    each neuron as ``pre`` times its clean slope."""
    if has_site(model, Site(Component.MLP_PRE_LINEAR, layer)):  # gated: act(gate(x)) * up(x)
        return [(Site(Component.MLP_PRE, layer), lambda act, hook: act.detach())]
    pre: dict[str, Tensor] = {}

    def slope(post: Tensor, hook: object) -> Tensor:
        p = pre["pre"]
        s = torch.where(p != 0, post / torch.where(p != 0, p, 1), torch.zeros_like(p)).detach()
        return p * s

    return [(Site(Component.MLP_PRE, layer), capture("pre", pre)), (Site(Component.MLP_POST, layer), slope)]


def directions(x: Float[Tensor, "row d_model"], n: int, *, seed: int) -> Float[Tensor, "row direction d_model"]:
    """``n`` unit directions per row: its differences from rows drawn with ``seed`` (module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    other = torch.randint(0, len(x), (len(x), n), generator=gen)
    v = x[other] - x[:, None]
    norm = v.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, v / torch.where(norm > 0, norm, 1), torch.zeros_like(v))


def active_masks(tset: TranscoderSet, inputs: list[Tensor]) -> list[Float[Tensor, "row feature"]]:
    """Each layer's features active on its rows (``inputs[l]``: the rows' MLP inputs at layer
    ``l``), 0/1 in float64, a row with none active all 1 (any feature may then be drawn): what
    :func:`decoder_directions` draws from, computed once per layer."""
    masks = []
    for layer, x in enumerate(inputs):
        tc = tset.transcoders[layer].detached()
        mask = tc.mask(tc.pre_activations(x)).double()
        mask[mask.sum(-1) == 0] = 1.0
        masks.append(mask)
    return masks


def decoder_directions(
    model: Model, tset: TranscoderSet, layer: int, masks: list[Tensor], norm_in: Float[Tensor, "row d_model"], n: int, *, seed: int
) -> Float[Tensor, "row direction d_model"]:
    """``n`` unit directions per row into ``layer``'s MLP input: decoder rows of features active on
    that row at earlier layers, through the input norm with its scale frozen (module docstring);
    ``masks[l]``: :func:`active_masks` of the rows at layer ``l`` (every ``l < layer``),
    ``norm_in``: the input norm's input."""
    gen = torch.Generator().manual_seed(seed)
    rows = len(norm_in)
    source = torch.randint(0, layer, (rows, n), generator=gen)
    picked = torch.empty(rows, n, norm_in.shape[-1], dtype=norm_in.dtype)
    for up in range(layer):
        chosen = torch.multinomial(masks[up], n, replacement=True, generator=gen)  # [row n]
        where = source == up
        picked[where] = tset.transcoders[up].W_dec.detach()[chosen[where]].to(norm_in.dtype)
    xs = norm_in[:, None].expand(rows, n, -1).reshape(1, rows * n, -1)
    with hooks(model, [(Site(Component.LN2_SCALE, layer), lambda act, hook: act.detach())]):
        _, v = torch.autograd.functional.jvp(mlp_input_norm(model, layer), xs, picked.reshape(1, rows * n, -1))
    v = v.reshape(rows, n, -1)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


def local_response_report(
    model: Model, tset: TranscoderSet, windows: Int[Tensor, "batch seq"], config: LocalResponseConfig | None = None
) -> pd.DataFrame:
    """One row per layer (module docstring's columns), on ``windows``' MLP inputs."""
    config = config or LocalResponseConfig()
    n = model.cfg.n_layers
    if len(tset.transcoders) != n:
        raise InvalidInputError(f"transcoder set has {len(tset.transcoders)} layers, the model {n}")
    if (tset.input_hook, tset.output_hook) != ("mlp.hook_in", "mlp.hook_out"):
        raise InvalidInputError(f"the local response compares a transcoder with the MLP module itself, so the set must read "
                                f"mlp.hook_in and write mlp.hook_out; this one reads {tset.input_hook} and writes {tset.output_hook}")
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise InvalidInputError(f"windows must be [batch seq] with seq >= 2, got shape {tuple(windows.shape)}")
    layers = range(n) if config.layers is None else config.layers
    if any(not 0 <= ly < n for ly in layers):
        raise InvalidInputError(f"LocalResponseConfig.layers must be in 0..{n - 1}, got {config.layers}")
    sites = [tset.input_site(ly) for ly in range(n)]
    norms = [Site(Component.LN2_IN, ly) for ly in range(n)] if config.directions_from == "decoder" else []
    with torch.no_grad(), recorded(model, sites + norms) as store:
        final_resid(model, windows)
    total = windows.shape[0] * (windows.shape[1] - 1)
    pick = torch.linspace(0, total - 1, min(config.rows, total)).round().long()
    inputs = [store[site][:, 1:].flatten(0, 1)[pick] for site in sites]
    masks = active_masks(tset, inputs[: max(layers, default=0)]) if config.directions_from == "decoder" else []
    out = []
    for layer in layers:
        x = inputs[layer]
        if config.directions_from == "data":
            v = directions(x, config.directions, seed=config.seed + layer)
        elif layer == 0:
            out.append({"layer": 0, "transcoder_error": float("nan"), "skip_only_error": float("nan"),
                        "neuron_error": float("nan"), "rows": len(x), "directions": config.directions})
            continue
        else:
            norm_in = store[norms[layer]][:, 1:].flatten(0, 1)[pick]
            v = decoder_directions(model, tset, layer, masks, norm_in, config.directions, seed=config.seed + layer)
        out.append(_errors(model, tset.transcoders[layer], layer, x, v, config.chunk) | {"rows": len(x), "directions": config.directions})
        row = out[-1]
        logger.info("layer %d: response error transcoder %.3f, skip alone %.3f, neurons %.3f",
                    layer, row["transcoder_error"], row["skip_only_error"], row["neuron_error"])
    return pd.DataFrame(out)


def _errors(model: Model, tc: Transcoder, layer: int, x: Tensor, v: Tensor, chunk: int) -> dict[str, float | int]:
    """The three relative squared errors of one layer, summed over rows in chunks."""
    sums = torch.zeros(4, dtype=torch.float64)  # |real|^2, |real - tc|^2, |real - skip|^2, |real - neuron|^2
    for start in range(0, len(x), chunk):
        xc, vc = x[start : start + chunk], v[start : start + chunk]
        real = mlp_response(model, layer, xc, vc).double()
        neuron = mlp_response(model, layer, xc, vc, frozen=True).double()
        sums += torch.stack([
            (real**2).sum(),
            ((real - transcoder_response(tc, xc, vc).double()) ** 2).sum(),
            ((real - skip_response(tc, vc).double()) ** 2).sum(),
            ((real - neuron) ** 2).sum(),
        ])
    return {"layer": layer, "transcoder_error": float(sums[1] / sums[0]), "skip_only_error": float(sums[2] / sums[0]),
            "neuron_error": float(sums[3] / sums[0])}
