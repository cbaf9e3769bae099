"""``lrbench sweep FILE [--offline] [--out DIR] [key=value ...]``: run a study's sweep (suite/cli/sweep_*.py).

Online (default): creates a wandb sweep from FILE and runs an agent in this process (``--count N`` trials,
``--sweep-id ID`` to join an existing sweep). ``--offline``: expands grid (and random with ``run_cap``,
seeded by ``--seed``) and runs every trial locally through the runner into one results folder; bayes
needs the online controller. ``--list`` prints the offline trials' run ids without running them.
``--trial`` is what ``wandb agent`` runs (the file's ``command``): one trial from the agent's parameters.
``key=value`` overrides apply to every trial (e.g. a tiny budget: ``max_steps=5 train_subset=200``).
Exit code: 0 when no trial failed, 1 when some did, 2 on bad input (nothing is run or written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = "results"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a sweep file (wandb format) online through wandb, or --offline locally",
        description="Run a study's sweep file (suite/sweeps/*.yaml, wandb's sweep format). Online: create the "
                    "wandb sweep and run an agent here. --offline: run the grid (or run_cap random draws) "
                    "locally into one results folder.")
    p.add_argument("file", metavar="FILE", help="sweep YAML (a path, or the name of a file in suite/sweeps/)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override for every trial, e.g. max_steps=5 train_subset=200")
    p.add_argument("--offline", action="store_true", help="run locally without wandb's server (grid, random)")
    p.add_argument("--out", default=None, help=f"results folder (default: ./{DEFAULT_OUT}/<sweep name>)")
    p.add_argument("--seed", type=int, default=0, help="offline random sweeps: seed of the draws (default 0)")
    p.add_argument("--list", action="store_true", help="print the offline trials' run ids and exit")
    p.add_argument("--wandb", action="store_true",
                   help="offline sweeps: also track every trial in wandb, offline (grouped by sweep name)")
    p.add_argument("--count", type=int, default=None, help="online: number of trials this agent runs")
    p.add_argument("--sweep-id", default=None, help="online: join this existing sweep instead of creating one")
    p.add_argument("--project", default=None, help="online: wandb project (default: file's, $WANDB_PROJECT, lrbench)")
    p.add_argument("--entity", default=None, help="online: wandb entity")
    p.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)  # run by `wandb agent`
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from lrbench.suite.cli.launch import add_launch_arguments

    add_launch_arguments(p)  # offline sweeps: --jobs, --threads, --launcher like lrbench run
    p.set_defaults(handler=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    from lrbench.suite.cli.launch import launch
    from lrbench.suite.cli.plan import finish, plan_configs, print_listing
    from lrbench.suite.cli.sweep_agent import run_online, run_trial
    from lrbench.suite.cli.sweep_file import load_sweep
    from lrbench.suite.cli.sweep_points import offline_configs
    from lrbench.suite.cli.tokens import check_extra_tokens, parse_assignments

    extra = check_extra_tokens(list(getattr(args, "extra", []) or []), "sweep")
    spec = load_sweep(args.file)
    tokens = [*args.overrides, *extra]
    out_dir = Path(args.out or Path(DEFAULT_OUT) / spec.name).expanduser()
    if args.trial:  # `wandb agent` runs the file's command: the tokens are the agent's parameters
        records = run_trial(spec, out_dir, {"progress": False}, tokens)
        return 0 if all(r["status"] != "failed" for r in records) else 1
    overrides = parse_assignments(tokens, "override")
    if args.no_progress:
        overrides["progress"] = False
    if not args.offline:
        run_online(spec, out_dir, overrides, count=args.count, sweep_id=args.sweep_id,
                          project=args.project, entity=args.entity)
        return 0
    if args.wandb:
        overrides["wandb"] = {"mode": "offline", "group": spec.name}
    configs = offline_configs(spec, overrides, args.seed)
    if args.list:
        print_listing(plan_configs(configs, out_dir, listing=True))
        return 0
    plan = plan_configs(configs, out_dir)
    result = launch(plan, args)  # here, --jobs workers, or a SLURM array (suite/cli/launch.py)
    return 0 if result is None else finish(plan, result, "sweep", f"{spec.name} ({spec.method}, offline): ", "trials")
