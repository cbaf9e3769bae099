"""``lrbench report DIR [--out OUT]``: HTML + Markdown report, figures and tidy CSV of a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="build an HTML/Markdown report from a results folder",
        description="Read DIR/runs/*.json and write OUT/index.html, OUT/report.md, OUT/figures/*.png and "
                    "OUT/results.csv (one row per run x metric). Failed and diverged runs are listed.")
    p.add_argument("dir", metavar="DIR", help="results folder (holds runs/*.json)")
    p.add_argument("--out", default=None, metavar="OUT", help="report folder (default: DIR/report)")
    p.add_argument("--title", default="lrbench report", help="page title")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lrbench.reports import build_report

    index = build_report(Path(args.dir), args.out, title=args.title)
    print(f"report: {index}")
    print(f"        {index.parent / 'report.md'}, {index.parent / 'results.csv'}, {index.parent / 'figures'}/")
    return 0
