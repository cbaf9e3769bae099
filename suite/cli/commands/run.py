"""``lrbench run SUITE|CONFIG [--out DIR] [--only KEY=VALUE ...] [key=value ...]``: run a suite of trainings.

SUITE is a built-in suite name (``quick``; see suite/suites/) or a YAML file (a suite, or one run's
config). ``key=value`` overrides every run (YAML values: ``seeds=[0,1,2]``, ``max_epochs=1``,
``estimator_options.copies=32``); ``--only KEY=VALUE`` keeps the matching runs. Every run's record goes
to ``DIR/runs/<run_id>.json``; runs already recorded as completed or diverged are skipped. The exit
code is 0 when no run failed, 1 when some did (they are listed), 2 on bad input (nothing is run).

Runs run side by side in ``--jobs`` worker processes (default: what the machine holds), each with its
share of the cores as torch threads (``--threads``, default: one per run for the tiny models;
suite/training/threads.py); several ``lrbench run`` processes, or a SLURM array (``--launcher slurm``), can
share one results folder: each run is claimed before it starts and runs once (docs/SCALE_OUT.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = "results"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a suite of trainings (e.g. 'lrbench run quick')",
        description="Run a suite (built-in name such as 'quick', or a YAML file) and write one JSON record per "
                    "run under OUT/runs/. Completed runs are skipped when the suite is run again. Runs are "
                    "claimed before they start, so several 'lrbench run' processes (or machines) on one results "
                    "folder split the suite.")
    p.add_argument("suite", metavar="SUITE|CONFIG", help="built-in suite name (quick, ...) or a YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override for every run, e.g. max_epochs=1 seeds=[0,1] estimator_options.copies=32")
    p.add_argument("--out", default=None, help=f"results folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only runs whose resolved config has this value (repeatable)")
    p.add_argument("--data-dir", default=None, help="data root (default: $LRBENCH_DATA or ~/.cache/lrbench/data)")
    p.add_argument("--list", action="store_true", help="print the resolved run ids and exit without running")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="processes (CPU) or GPUs per node; N > 1 trains data-parallel (same as devices=N)")
    p.add_argument("--strategy", default=None, help="Lightning strategy, e.g. ddp (same as strategy=...); "
                   "multi-node: docs/SCALE_OUT.md")
    p.add_argument("--wandb", action="store_const", const=True, default=None,
                   help="also log to Weights & Biases: offline unless WANDB_MODE=online or wandb=online "
                        "(WANDB_MODE=disabled turns it off)")
    from lrbench.suite.cli.launch import add_launch_arguments

    add_launch_arguments(p)
    p.set_defaults(handler=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    from lrbench.suite.cli.launch import launch
    from lrbench.suite.cli.plan import finish, plan_suite, print_listing, print_result_table
    from lrbench.suite.cli.tokens import check_extra_tokens, parse_assignments

    # key=value tokens after an option (``quick --out D max_epochs=1``) reach us as extra arguments
    extra = check_extra_tokens(list(getattr(args, "extra", []) or []), "run")
    overrides = parse_assignments([*args.overrides, *extra], "override")
    out_override = overrides.pop("out", None)  # ``out=DIR`` on the command line is --out DIR
    out = args.out or out_override or DEFAULT_OUT
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.no_progress:
        overrides["progress"] = False
    if args.threads is not None:
        overrides["threads"] = args.threads
    for key in ("devices", "strategy", "wandb"):  # scale-out and tracking flags (suite/training, tracking.py)
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    if args.list:
        print_listing(plan_suite(args.suite, overrides, args.only, out_dir=Path(str(out)), listing=True))
        return 0
    plan = plan_suite(args.suite, overrides, args.only, out_dir=Path(str(out)))  # every check, nothing run yet
    result = launch(plan, args)  # here, --jobs workers, or a SLURM array (suite/cli/launch.py)
    if result is None:  # submitted without waiting
        return 0
    code = finish(plan, result, "run")
    if plan.is_rank_zero:
        print_result_table(plan)
    return code
