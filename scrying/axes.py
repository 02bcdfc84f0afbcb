"""The glossary of tensor axis names used in every jaxtyping annotation in scrying, and the
type of every ``model`` parameter (:data:`Model`).

Names match TransformerLens's:

========== ==============================================================
``batch``  prompts processed together
``pos``    token positions (``pos_q``/``pos_k`` for attention queries/keys)
``d_model`` residual-stream width
``d_head`` width of one attention head
``d_mlp``  MLP hidden width (neurons)
``d_vocab`` vocabulary size
``layer``  transformer block index
``head``   query-head index (grouped-query models share K/V across heads)
``kv_head`` key/value-head index
``node``   node of an attribution graph
``edge``   edge of an attribution graph
``prompt`` prompts in a data set (statistics over prompts)
``sample`` bootstrap resamples
========== ==============================================================

Runtime shape checking is switched on for the ``scrying`` package in the test suite
(``--jaxtyping-packages=scrying,beartype.beartype`` in ``pyproject.toml``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jaxtyping import Bool, Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge as Model
else:
    #: A hooked TransformerLens ``TransformerBridge`` (:func:`scrying.models.load_model`).
    #: Type checkers see the class; at run time it is ``Any``, since importing TransformerLens
    #: costs seconds that a command rejecting bad input should not pay. Everything that reaches
    #: into the bridge's internals lives in :mod:`scrying.models.adapter`.
    Model = Any

__all__ = ["Bool", "Float", "Int", "Model", "Tensor"]
