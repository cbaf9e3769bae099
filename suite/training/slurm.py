"""``--launcher slurm``: the suite as a job array of workers, submitted through submitit.

Every array task runs the claim loop of ``suite.training.worker`` over the whole suite (``array_task``): the claims
in the shared results folder split the runs between the tasks, so the array's size only sets how many
runs go at once, a task that dies (preempted, node failure) loses only its current run (another task, or
the next submission, takes its stale claim over), and a re-submission finishes what is left. submitit
pickles the function and the configs into ``OUT/submitit/`` and writes each task's stdout/stderr there.

    lrbench run quick --launcher slurm --jobs 8 --slurm partition=cpu --slurm timeout_min=60 --slurm cpus_per_task=2

``--slurm KEY=VALUE``: submitit's generic parameters (timeout_min, mem_gb, cpus_per_task, gpus_per_node,
nodes, tasks_per_node, name) as they are, anything else as ``slurm_KEY`` (partition, account, qos,
constraint, array_parallelism, ...). ``cluster="local"`` is submitit's LocalExecutor (``--launcher
submitit-local``): the same pickled tasks as subprocesses of this machine, which is how it is tested.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lrbench.suite.errors import UserError

GENERIC_PARAMETERS = ("timeout_min", "mem_gb", "cpus_per_task", "gpus_per_node", "nodes", "tasks_per_node", "name")
DEFAULT_ARRAY_TASKS = 8


def array_task(configs: list[dict[str, Any]], settings: Any, index: int) -> int:
    """One array task: a worker over the whole suite; returns how many runs it trained."""
    from . import threads
    from .worker import work_through

    threads.configure_process(settings.jobs)  # SLURM: the task's cpus (affinity); local: shared with the others
    return len(work_through(configs, settings))


def _executor(out_dir: Path, cluster: str, workers: int, parameters: dict[str, Any]) -> Any:
    import submitit

    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--launcher slurm: no 'sbatch' on PATH (not a SLURM login node); use --launcher local "
                        "or submitit-local")
    executor = submitit.AutoExecutor(folder=str(out_dir / "submitit" / "%j"), cluster=cluster)
    options: dict[str, Any] = {"timeout_min": 60, "name": "lrbench", "slurm_array_parallelism": workers}
    for key, value in parameters.items():
        options[key if key in GENERIC_PARAMETERS or key.startswith("slurm_") else f"slurm_{key}"] = value
    try:
        executor.update_parameters(**options)
    except (NameError, ValueError, AssertionError) as exc:
        raise UserError(f"--slurm: {str(exc).strip().splitlines()[0]}") from None
    return executor


def submit_suite(configs: list[dict[str, Any]], out_dir: Path, cluster: str = "slurm", workers: int | None = None,
                 parameters: dict[str, Any] | None = None, wait: bool = True, stale_after: float | None = None,
                 progress: bool = True) -> Any:
    """Submit ``workers`` array tasks (default: min(runs to do, 8)); wait for them unless ``wait`` is False.

    Returns the ``SuiteResult`` (records read back from the folder), or None when not waiting."""
    import functools

    from lrbench.schema import run_id

    from .execute import SuiteResult
    from .results_store import is_done, read_record
    from .worker import WorkerSettings

    out_dir = Path(out_dir)
    ids = [run_id(c) for c in configs]
    skipped = [rid for rid in ids if is_done(out_dir, rid)]
    todo = [c for c, rid in zip(configs, ids, strict=True) if rid not in skipped]
    workers = workers or max(1, min(len(todo), DEFAULT_ARRAY_TASKS))
    executor = _executor(out_dir, cluster, workers, dict(parameters or {}))
    settings = WorkerSettings(out_dir=str(out_dir.resolve()), jobs=workers if cluster == "local" else 1)
    if stale_after is not None:
        settings = WorkerSettings(out_dir=settings.out_dir, jobs=settings.jobs, stale_after=stale_after,
                                  heartbeat_every=min(settings.heartbeat_every, stale_after / 4))
    jobs = executor.map_array(functools.partial(array_task, configs, settings), list(range(workers)))
    if progress:
        print(f"lrbench run: submitted {len(jobs)} array task(s) ({cluster}): {jobs[0].job_id.split('_')[0]}; "
              f"logs in {out_dir / 'submitit'}", flush=True)
    if not wait:
        return None
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - a dead task: its runs are taken over by the others
            if progress:
                print(f"lrbench run: array task {job.job_id} failed: {str(exc).strip().splitlines()[-1]}")
    result = SuiteResult(out_dir=out_dir, skipped=skipped)
    result.records = [r for rid in ids if rid not in skipped and (r := read_record(out_dir, rid)) is not None]
    return result
