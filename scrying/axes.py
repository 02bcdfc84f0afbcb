"""The glossary of tensor axis names used in every jaxtyping annotation in scrying.

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

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Tensor"]
