"""``lrbench bench [--json] [--device cpu|cuda] [--quick]``: the estimators against their physical floor.

Prints the headline ratios (``suite.bench.runner``) beside their targets; ``--json`` prints the whole
record (ratios, targets, per-measurement details, machine, config) as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lrbench.suite.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="benchmark the estimators against their physical floor (time and memory ratios)",
        description="Measure, in one process and side by side, ULR/ALR step time over the forward passes "
                    "they must run, prefix-sharing speed-up, LR/BP and BP/XConv peak memory, ALR noise bits "
                    "per element and the Lightning harness overhead. See BENCHMARKS.md.")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes on 2 CPU cores)")
    p.add_argument("--json", action="store_true", help="print the whole record as one JSON object")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads during the bench (default: 1 on cpu, unchanged on cuda)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default: 21; quick 5)")
    p.add_argument("--skip", action="append", default=[], metavar="MEASUREMENT",
                   help="skip a measurement (repeatable): speed, lr_memory, noise_bits, xconv_memory, harness, alr_parallel")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="keep glibc's malloc defaults (by default the CPU bench keeps freed memory in the heap; "
                        "see suite/bench/allocator.py)")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON record to FILE")
    p.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> Any:
    """``BenchConfig`` from the command line; bad values raise ``UserError`` naming the valid ones."""
    import torch

    from lrbench.suite.bench import BenchConfig
    from lrbench.suite.bench.headlines import MEASUREMENTS

    if args.device not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available on this machine; use --device cpu")
    for name in args.skip:
        if name not in MEASUREMENTS:
            raise UserError(f"--skip {name!r}: valid measurements are {', '.join(MEASUREMENTS)}")
    overrides: dict[str, Any] = {"device": args.device, "skip": tuple(args.skip),
                                 "malloc_tuning": not args.no_malloc_tuning}
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else torch.get_num_threads())
    if threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    overrides["threads"] = threads
    if args.rounds is not None:
        if args.rounds < 1:
            raise UserError(f"--rounds must be >= 1, got {args.rounds}")
        overrides["rounds"] = args.rounds
    return BenchConfig.quick_config(**overrides) if args.quick else BenchConfig(**overrides)


def format_report(record: dict[str, Any]) -> str:
    """The headline ratios, their targets and whether they are met, plus the machine line."""
    m = record["machine"]
    lines = [f"lrbench bench ({'quick' if record['config']['quick'] else 'full'}) on {m['cpu_model']} "
             f"({m['cpu_count']} cores), device {record['config']['device']}, "
             f"{record['config']['threads']} thread(s), clock: {record['clock']}, malloc tuning: "
             f"{'on' if record['allocator'].get('applied') else 'off'}, {record['total_seconds']:.0f} s"]
    targets = record["targets"]
    for name, value in record["ratios"].items():
        shown = "n/a" if value is None else f"{value:.3f}"
        target = targets.get(name)
        verdict = "" if target is None else (f"  target {target['target']:8s} " + {
            True: "met", False: "MISSED", None: "not measured"}[target["met"]])
        lines.append(f"  {name:28s} {shown:>8s}{verdict}")
    if record["missing"]:
        lines.append(f"  estimators not installed: {', '.join(record['missing'])}")
    if record.get("gpu_note"):
        lines.append(f"  note: {record['gpu_note']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lrbench.suite.bench import run_bench

    cfg = build_config(args)
    progress = None if args.json else (lambda name: print(f"  measuring {name} ...", file=sys.stderr, flush=True))
    record = run_bench(cfg, progress=progress)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, default=str)
    if args.json:
        json.dump(record, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        print(format_report(record))
    return 0
