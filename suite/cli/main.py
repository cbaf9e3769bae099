"""The ``lrbench`` command line. Each sub-command lives in ``suite/cli/commands/<name>.py`` and defines
``add_parser(subparsers)`` and ``run(args) -> int``; this module only wires them together and turns
user errors into one line on stderr with exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lrbench.suite.errors import UserError, user_error_types

# Order is the order shown in ``lrbench --help``.
COMMANDS = ("run", "list", "gradcheck", "check-estimator", "report", "paper", "robustness", "sweep", "bench", "doctor")
# Commands that use no registry (and import no torch): they neither take --plugin nor load entry points.
PLUGIN_FREE = ("report",)
PLUGIN_HELP = ("import MODULE (or a .py file) first, so that the estimators, tasks and paper specs it "
               "registers can be used (repeatable; installed plugins load by themselves: docs/EXTENDING.md)")


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line (and exit code 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrbench", description="Backpropagation vs forward-only gradient estimators: "
                     "benchmark and reproducibility suite.")
    parser.add_argument("--plugin", action="append", dest="global_plugins", default=[], metavar="MODULE",
                        help=PLUGIN_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"lrbench.suite.cli.commands.{name.replace('-', '_')}").add_parser(sub)
    for name, command in sub.choices.items():  # --plugin after the sub-command too (lrbench run S --plugin M)
        if name not in PLUGIN_FREE:
            command.add_argument("--plugin", action="append", dest="plugins", default=[], metavar="MODULE",
                                 help=PLUGIN_HELP)
    return parser


def load_requested_plugins(args: argparse.Namespace) -> None:
    """Installed plugins (a broken one: one warning line, skipped), then every ``--plugin`` (a broken one:
    PluginError, exit 2). Sub-commands in ``PLUGIN_FREE`` load none."""
    if args.command in PLUGIN_FREE:
        if args.global_plugins:
            raise UserError(f"'lrbench {args.command}' uses no plugins; drop --plugin")
        return
    from lrbench.plugins import load_entry_points, load_plugins

    for line in load_entry_points():
        print(f"lrbench: warning: {line}", file=sys.stderr)
    load_plugins([*args.global_plugins, *getattr(args, "plugins", [])])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        load_requested_plugins(args)
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
