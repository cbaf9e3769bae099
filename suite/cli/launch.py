"""Where a suite's workers run: here (``--launcher local``: this process, or ``--jobs N`` worker
processes) or as a job array through submitit (``--launcher slurm``; ``submitit-local`` is submitit's
local executor, the same array path on this machine without SLURM). The claims split the work in every
case (suite/training/claims.py), so launchers can be mixed on one results folder."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

LAUNCHERS = ("local", "slurm", "submitit-local")


def _threads_arg(text: str) -> int | str:
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {text!r}")


def add_launch_arguments(p: argparse.ArgumentParser) -> None:
    """``--jobs --threads --launcher --slurm --no-wait --claim-timeout`` (lrbench run, sweep, paper)."""
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs at once in worker processes (default: what the machine holds: cores on CPU, "
                        "GPUs on GPU, bounded by memory at ~1.1 GB per worker); with --launcher slurm: array tasks")
    p.add_argument("--threads", type=_threads_arg, default=None, metavar="N|auto",
                   help="torch threads per run (same as threads=N; default auto: the worker's share of the "
                        "cores, 1 for steps under 1 GFLOP such as the digits models)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local (default): here; slurm: a job array of workers through submitit; "
                        "submitit-local: the same array with submitit's local executor")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="submitit/SLURM parameter for --launcher slurm (repeatable), e.g. partition=gpu "
                        "timeout_min=120 cpus_per_task=4 gpus_per_node=1")
    p.add_argument("--no-wait", action="store_true", help="--launcher slurm: submit and return")
    p.add_argument("--claim-timeout", type=float, default=None, metavar="SECONDS",
                   help="a claim whose heartbeat is older is taken over (default 120; docs/SCALE_OUT.md)")


def launch(plan: Any, args: argparse.Namespace) -> Any:
    """Execute a checked plan with the chosen launcher; the ``SuiteResult`` (None: submitted, not waited for).

    Bad launcher settings are one-line UserErrors raised before anything runs."""
    from lrbench.suite.errors import UserError
    from lrbench.suite.training.results_store import is_done
    from lrbench.suite.training.threads import resolve_jobs

    from .tokens import parse_assignments

    if args.claim_timeout is not None and args.claim_timeout <= 0:
        raise UserError(f"--claim-timeout must be > 0 seconds, got {args.claim_timeout}")
    if args.threads is not None:  # --threads of every command that launches (run's also sets threads=)
        plan = dataclasses.replace(plan, configs=tuple(dataclasses.replace(c, threads=args.threads)
                                                       for c in plan.configs))
    configs = list(plan.configs)
    todo = [c for c in configs if not is_done(plan.out_dir, c.run_id)]
    if args.launcher == "local":
        if args.slurm or args.no_wait:
            raise UserError("--slurm/--no-wait apply to --launcher slurm or submitit-local")
        from lrbench.suite.training.execute import execute

        jobs = resolve_jobs(args.jobs, todo or configs)
        return execute(plan, jobs=jobs, stale_after=args.claim_timeout)
    from lrbench.suite.training.slurm import submit_suite

    resolve_jobs(args.jobs, configs)  # DDP + --jobs > 1: one-line error
    return submit_suite(configs, plan.out_dir, cluster="slurm" if args.launcher == "slurm" else "local",
                        workers=args.jobs, parameters=parse_assignments(args.slurm, "--slurm"),
                        wait=not args.no_wait, stale_after=args.claim_timeout, progress=plan.progress)
