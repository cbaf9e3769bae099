"""``lrbench doctor [--device cuda|cpu] [--out FILE] [--skip CHECK]``: exercise every device code path
(suite/cli/doctor.py) and write one JSON summary; exit 0 when every check passed, 1 otherwise, 2 when the
device is absent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="check every CUDA (or CPU) code path in one go and write a JSON summary",
        description="Run the quick suite with --jobs, the bench, the memory definition against the CUDA "
                    "allocator, ALR's concurrent streams, XConv's and the attacks' cuDNN paths and a "
                    "robustness run on the device (<= 5 minutes on one GPU); --device cpu runs the CPU "
                    "versions quickly.")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--out", default="doctor.json", metavar="FILE", help="JSON summary (default: ./doctor.json)")
    p.add_argument("--skip", action="append", default=[], metavar="CHECK", help="skip a check (repeatable)")
    p.set_defaults(handler=run)


def _line(name: str, result: dict[str, Any]) -> None:
    verdict = {True: "ok", False: "FAILED", None: "skipped"}[result["ok"]]
    detail = result.get("error") or result.get("skipped") or ""
    print(f"  {name:14s} {verdict:8s} {result['seconds']:7.1f} s  {detail}", flush=True)


def run(args: argparse.Namespace) -> int:
    from lrbench.suite.cli.doctor import run_doctor

    summary = run_doctor(args.device, out=Path(args.out), skip=tuple(args.skip), progress=_line)
    print(f"lrbench doctor: {'all checks passed' if summary['ok'] else 'some checks FAILED'} on "
          f"{summary['device_name']} in {summary['seconds']:.0f} s; summary in {args.out}")
    if not summary["ok"]:
        failed = [k for k, v in summary["checks"].items() if v["ok"] is False]
        print(f"lrbench doctor: failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if summary["ok"] else 1
