"""pytest rewrites the asserts of test files under a ``tests/`` folder only: its default ``test_*.py`` pattern also
matched torch's own ``torch/_inductor/test_operators.py`` (imported lazily with the first
optimiser). A worker crashed while rewriting it (``AST constructor recursion depth mismatch``)
in a run that the ``sae_lens`` fixture had already broken by dropping torch's modules from
``sys.modules`` (that cause: ``tests/test_transcoder_published.py``, ``_forget_sae_lens``);
rewriting a dependency's modules is unwanted either way."""

from __future__ import annotations

import importlib
import sys


def _loader(module_name: str) -> str:
    return type(sys.modules[module_name].__loader__).__name__


def test_our_test_files_are_rewritten():
    assert _loader(__name__) == "AssertionRewritingHook"


def test_torch_modules_named_like_tests_are_not_rewritten():
    importlib.import_module("torch._inductor.test_operators")  # torch imports it lazily (torch._dynamo's trace rules)
    assert _loader("torch._inductor.test_operators") != "AssertionRewritingHook"
