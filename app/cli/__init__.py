"""The ``chemlatent`` command line.

Each subcommand lives in its own module ``chemlatent.app.cli.<name>`` exposing
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports happen
inside ``run`` so that ``chemlatent --help`` stays fast.

Errors the user can fix (``ChemlatentError`` and friends, bad files, bad options) are
printed as one line on stderr with exit status 2; anything else is a bug, printed as one
"internal error" line with exit status 1. ``--debug`` (before or after the subcommand) shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from chemlatent import __version__
from chemlatent.errors import ChemlatentError

COMMANDS = ["demo", "generate", "ingest", "labels", "train", "encode", "evaluate", "flag",
            "serve", "bench", "compare", "annotate", "rank"]


def _load(name: str):
    try:
        return importlib.import_module(f"chemlatent.app.cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"chemlatent.app.cli.{name}":
            return None
        raise


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where to look, no usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = Parser(
        prog="chemlatent",
        description="Explore the chemical latent space of millions of stellar spectra.",
    )
    parser.add_argument("--version", action="version", version=f"chemlatent {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        mod.add_arguments(p)
        modules[name] = mod
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    try:
        return int(modules[args.command].run(args) or 0)
    except ChemlatentError as exc:
        if debug:
            raise
        print(f"chemlatent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"chemlatent {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, MemoryError) as exc:
        if debug:
            raise
        print(f"chemlatent {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: still one line, traceback with --debug
        if debug:
            raise
        print(f"chemlatent {args.command}: internal error: {_one_line(exc)} (rerun with --debug "
              "for the traceback and report it)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` squeezed onto one line."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
