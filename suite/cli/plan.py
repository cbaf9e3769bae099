"""The plan step shared by ``lrbench run``, ``lrbench sweep --offline`` and ``lrbench paper``.

    plan = plan_suite("quick", overrides, only, out_dir=Path("results"))   # validated, nothing written
    result = execute(plan)                                                 # suite.training.execute
    return finish(plan, result, "run")                                     # summary + exit code

``plan_suite`` (a suite name, YAML file or mapping) and ``plan_configs`` (configs a sweep or a paper
spec resolved) return a :class:`~suite.training.execute.Plan` only when every run is valid and every
preflight check (suite.cli.preflight) passed: anything invalid is one UserError line before any file
is written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lrbench.schema import RunConfig
from lrbench.suite.training.execute import Plan, SuiteResult
from lrbench.suite.training.results_store import is_done

from .preflight import preflight
from .suite_files import expand_suite


def plan_configs(configs: Iterable[Mapping[str, Any]], out_dir: Path | str, *, listing: bool = False) -> Plan:
    """A checked plan of resolved ``configs`` into ``out_dir``; ``listing=True`` (``--list``) checks the
    runs' settings but neither checkpoints nor data."""
    plan = Plan(configs=tuple(RunConfig.from_mapping(c) for c in configs), out_dir=Path(out_dir).expanduser())
    preflight(plan.configs, plan.out_dir, settings_only=listing)
    return plan


def plan_suite(source: Mapping[str, Any] | str | Path, overrides: Mapping[str, Any] | Sequence[str] = (),
               only: Sequence[str] = (), *, out_dir: Path | str, listing: bool = False) -> Plan:
    """Every run of a suite (× seeds, after ``overrides``, filtered by ``only``) as a checked plan."""
    return plan_configs(expand_suite(source, overrides, only), out_dir, listing=listing)


def print_listing(plan: Plan) -> None:
    """One line per run: ``<run_id>  done|to run``."""
    for rid in plan.run_ids:
        print(f"{rid}  {'done' if is_done(plan.out_dir, rid) else 'to run'}")


def finish(plan: Plan, result: SuiteResult, command: str, what: str = "", noun: str = "runs") -> int:
    """Print the summary line and one line per failed run (rank 0 only); return the exit code."""
    if not plan.is_rank_zero:  # DDP: the other ranks ran the same plan silently
        return result.exit_code
    done = len(result.records) - len(result.failures)
    elsewhere = f"{len(result.elsewhere)} by other workers, " if result.elsewhere else ""
    print(f"lrbench {command}: {what}{len(plan.configs)} {noun}: {done} run now, {len(result.skipped)} already "
          f"done, {elsewhere}{len(result.failures)} failed; records in {plan.out_dir / 'runs'}")
    for record in result.failures:
        print(f"lrbench {command}: FAILED {record['run_id']}: {record['message']}", file=sys.stderr)
    return result.exit_code


def print_result_table(plan: Plan) -> None:
    """The plan's task × variant result table (``reports.summary``, from the records in ``plan.out_dir``)
    and the ``lrbench report`` command to run next."""
    import shlex

    from lrbench.reports.summary import run_summary
    from lrbench.suite.training.results_store import read_record

    records = [r for r in (read_record(plan.out_dir, rid) for rid in plan.run_ids) if r is not None]
    table = run_summary(records)
    if table:
        print(table)
    print(f"next: lrbench report {shlex.quote(str(plan.out_dir))}")
