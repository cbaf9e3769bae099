"""Execute a plan: every run of it whose record is not already final, one after the other.

``execute(plan)`` walks ``plan.configs`` in order, skips a run whose record is final (completed or
diverged; a ``failed`` run is retried), and trains every other one through :func:`execute_run`, the one
function that turns (config, results folder) into a record; a run that raises is recorded as ``failed``
and the plan goes on. Nothing is checked here: the plan was validated when it was made
(``suite.cli.plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrbench.schema import RunConfig
from lrbench.suite.training.launcher_env import global_rank_from_env
from lrbench.suite.training.results_store import is_done
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
    """What ``execute`` did: records of the runs it ran, ids it skipped, and failures."""

    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

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


def execute(plan: Plan, progress: bool | None = None) -> SuiteResult:
    """Run every config of ``plan`` not already final; returns what happened (never raises per run)."""
    from tqdm.auto import tqdm

    progress = (plan.progress if progress is None else progress) and plan.is_rank_zero  # DDP: rank 0 shows bars
    result = SuiteResult(out_dir=plan.out_dir)
    total = len(plan.configs)
    bar = tqdm(total=total, desc="suite", unit="run", position=0, disable=not progress, leave=True)
    for i, config in enumerate(plan.configs, start=1):
        rid = config.run_id
        bar.set_description(f"run {i}/{total} {rid}")
        if is_done(plan.out_dir, rid):
            result.skipped.append(rid)
            bar.update(1)
            continue
        record = execute_run(config, plan.out_dir, progress=progress)
        result.records.append(record)
        if progress:
            bar.write(f"[{i}/{total}] {rid}: {_outcome(record)}")
        bar.update(1)
    bar.close()
    return result


def _outcome(record: dict[str, Any]) -> str:
    acc = record["metrics"].get("test_accuracy_final")
    shown = f"{acc:.3f}" if isinstance(acc, float) else "-"
    return f"{record['status']} (test accuracy {shown})" + (f" — {record['message']}" if record["message"] else "")


