"""One error hierarchy for scrying.

Every error raised on purpose by scrying derives from :class:`ScryingError`. Subclasses also
inherit the builtin a caller would expect (``ValueError``, ``KeyError``, ``OSError``), so
``except ValueError`` keeps working. Messages name the input and what was expected; the CLI
prints them as one line and exits with status 2.
"""

from __future__ import annotations


class ScryingError(Exception):
    """Root of every error scrying raises on purpose."""


class InvalidInputError(ScryingError, ValueError):
    """An argument or input file does not have the form an operation expects."""


class ConfigError(InvalidInputError):
    """A configuration dataclass field is out of range; the message names the field."""


class UnknownModelError(ScryingError, KeyError):
    """A model spec is neither a registered name, a local path, nor a loadable hub name."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence.
        return str(self.args[0]) if self.args else ""


class ModelLoadError(ScryingError, OSError):
    """A model exists but could not be read (unreadable file, no network for a hub name)."""


class PromptError(InvalidInputError):
    """A prompt is empty, too long for the model's context, or does not tokenize as needed."""


class SiteError(ScryingError, KeyError):
    """A hook site (layer, component, head) does not exist in the model."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ClusterError(ScryingError, RuntimeError):
    """A Ray cluster cannot be reached, lacks the resources a worker asks for, or its workers
    failed beyond their restarts (``scrying.batch``)."""


class ModelMismatchError(InvalidInputError):
    """A worker loaded other weights than the batch's journal was written with (a node with
    another copy of the model at the same path)."""
