"""The ``lrbench`` command line. Each sub-command lives in ``suite/cli/commands/<name>.py`` and defines
``add_parser(subparsers)`` and ``run(args) -> int``; this module only wires them together and turns
user errors into one line on stderr with exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lrbench.suite.errors import user_error_types

# Order is the order shown in ``lrbench --help``.
COMMANDS = ("run", "list", "gradcheck", "report", "paper", "robustness", "sweep", "bench", "doctor")


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line (and exit code 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrbench", description="Backpropagation vs forward-only gradient estimators: "
                     "benchmark and reproducibility suite.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"lrbench.suite.cli.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.handler(args) or 0)
    except user_error_types() as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"lrbench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrbench: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
