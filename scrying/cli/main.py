"""Entry point of the ``scrying`` command.

Errors scrying raises on purpose (and unreadable files) are printed as one line,
``scrying: error: ...``, with exit status 2 and no traceback (``-v`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from scrying.cli import ablate, basic, emergence, reversal, trace, transcoders, view
from scrying.cli.common import add_global_args
from scrying.errors import ScryingError


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_global_args(common)
    parser = argparse.ArgumentParser(
        prog="scrying",
        description="Mechanistic interpretability of transformer language models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.register(sub, [common])
    return parser


def _command_modules() -> list:
    return [basic, trace, ablate, emergence, reversal, view, transcoders]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        _quiet_third_party()
    try:
        return int(args.func(args) or 0)
    except (ScryingError, OSError) as err:
        if args.verbose:
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        sys.stderr.write(f"scrying: error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("scrying: interrupted\n")
        return 130


def _quiet_third_party() -> None:
    warnings.filterwarnings("ignore")
    for name in ("transformers", "transformer_lens", "huggingface_hub", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


if __name__ == "__main__":
    sys.exit(main())
