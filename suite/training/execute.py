"""Execute a plan: every run of it whose record is not already final.

``execute(plan, jobs=N)`` skips a run whose record is final (completed or diverged; a ``failed`` run is
retried) and trains every other one through :func:`execute_run`, the one function that turns (config,
results folder) into a record; a run that raises is recorded as ``failed`` and the plan goes on. Runs are
claimed before they start (``suite.training.claims``, the loop of ``suite.training.worker``), so other
processes on the same results folder split the plan with this one; ``jobs > 1`` runs that many local
workers (``suite.training.pool``). DDP plans (``devices > 1``) run in order in this process without claims
(every rank walks the same list). Nothing is checked here: the plan was validated when it was made
(``suite.cli.plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lrbench.schema import RunConfig
from lrbench.suite.training.launcher_env import global_rank_from_env
from lrbench.suite.training.results_store import is_done, read_record
from lrbench.suite.training.runner import run_one


@dataclass(frozen=True)
class Plan:
    """Validated run configs and the results folder they go to (made by ``suite.cli.plan``)."""

    configs: tuple[RunConfig, ...]
    out_dir: Path

    @property
    def run_ids(self) -> list[str]:
        return [c.run_id for c in self.configs]

    @property
    def progress(self) -> bool:
        """Progress bars unless some run turned them off (``progress=false`` / ``--no-progress``)."""
        return all(c.progress for c in self.configs)

    @property
    def is_rank_zero(self) -> bool:
        """False in the other processes of a multi-device job, which run the same plan silently."""
        return global_rank_from_env(self.configs[0].devices if self.configs else 1) == 0


@dataclass
class SuiteResult:
    """What ``execute`` did: records of the runs it ran, ids it skipped (final before it started), ids
    other workers finished meanwhile, and failures."""

    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # finished meanwhile by other workers on the folder

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def execute_run(config: RunConfig, out_dir: Path, progress: bool = False) -> dict[str, Any]:
    """Train one config into ``out_dir`` and return its record (the unit a parallel pool would call)."""
    return run_one(config, out_dir, progress=progress)


def execute(plan: Plan, progress: bool | None = None, jobs: int = 1, stale_after: float | None = None) -> SuiteResult:
    """Run every config of ``plan`` not already final; returns what happened (never raises per run)."""
    progress = (plan.progress if progress is None else progress) and plan.is_rank_zero  # DDP: rank 0 shows bars
    result = SuiteResult(out_dir=plan.out_dir)
    ids = plan.run_ids
    result.skipped = [rid for rid in ids if is_done(plan.out_dir, rid)]
    if any(int(c.devices) > 1 for c in plan.configs):
        return _execute_in_order(plan, progress, result)
    return _execute_claimed(plan, progress, jobs, stale_after, result)


def _execute_claimed(plan: Plan, progress: bool, jobs: int, stale_after: float | None,
                     result: SuiteResult) -> SuiteResult:
    """The claim loop here (``jobs == 1``) or in a pool of ``jobs`` workers; events feed the progress."""
    from lrbench.suite.training import threads
    from lrbench.suite.training.suite_progress import SuiteProgress
    from lrbench.suite.training.worker import WorkerSettings, work_through

    ids = plan.run_ids
    configs = list(plan.configs)
    bar = SuiteProgress(ids, result.skipped, enabled=progress)
    settings = WorkerSettings(out_dir=str(plan.out_dir), jobs=jobs, progress=progress and jobs == 1)
    if stale_after is not None:
        settings = replace(settings, stale_after=stale_after,
                           heartbeat_every=min(settings.heartbeat_every, stale_after / 4))
    maybe_elsewhere: set[str] = set()

    def on_event(kind: str, rid: str, record: dict[str, Any] | None) -> None:
        if kind == "ran" and record is not None:
            result.records.append(record)
            bar.finished(kind, rid, record)
        elif jobs == 1:  # the only worker here: a final run it did not train was trained elsewhere
            result.elsewhere.append(rid)
            bar.finished(kind, rid, record)
        else:  # may be a sibling worker's run whose "ran" event is still on its way
            maybe_elsewhere.add(rid)

    if jobs > 1:
        from lrbench.suite.training.pool import run_pool

        gpu = bool(configs) and configs[0].accelerator == "gpu"
        run_pool(configs, settings, on_event, cuda_devices=threads.cuda_device_count() if gpu else 0)
        ran = {r["run_id"] for r in result.records}
        for rid in ids:
            if rid in maybe_elsewhere and rid not in ran and rid not in result.skipped:
                result.elsewhere.append(rid)
                bar.finished("final", rid, read_record(plan.out_dir, rid))
    else:
        threads.set_interop_threads(threads.process_budget())  # effective only before torch's first parallel op
        work_through(configs, settings, on_event=on_event)
    bar.close()
    result.records.sort(key=lambda r: ids.index(r["run_id"]))
    return result


def _execute_in_order(plan: Plan, progress: bool, result: SuiteResult) -> SuiteResult:
    """DDP: every rank walks the same list (Lightning re-runs the command for the other ranks), so runs are
    not claimed: a DDP plan is one job per results folder (docs/SCALE_OUT.md)."""
    from tqdm.auto import tqdm

    total = len(plan.configs)
    bar = tqdm(total=total, desc="suite", unit="run", position=0, disable=not progress, leave=True)
    for i, config in enumerate(plan.configs, start=1):
        rid = config.run_id
        bar.set_description(f"run {i}/{total} {rid}")
        if rid in result.skipped:
            bar.update(1)
            continue
        record = execute_run(config, plan.out_dir, progress=progress)
        result.records.append(record)
        if progress:
            bar.write(finished_line(i, total, record))
        bar.update(1)
    bar.close()
    return result


def finished_line(i: int, total: int, record: dict[str, Any]) -> str:
    """``[i/total] run_id: status (test accuracy 0.953) — message``: one line per finished run."""
    return f"[{i}/{total}] {record['run_id']}: {_outcome(record)}"


def _outcome(record: dict[str, Any]) -> str:
    acc = record["metrics"].get("test_accuracy_final")
    shown = f"{acc:.3f}" if isinstance(acc, float) else "-"
    return f"{record['status']} (test accuracy {shown})" + (f" — {record['message']}" if record["message"] else "")


