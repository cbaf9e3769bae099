"""The public Python API of lrbench, for notebooks and scripts (docs/API.md). Re-exported lazily from
``lrbench`` (``import lrbench`` stays cheap; torch is imported by the first call that needs it)::

    import lrbench
    records = lrbench.run_suite("quick", {"max_epochs": 1}, out="results")   # list of run records
    frame = lrbench.results_frame("results")                                # tidy pandas DataFrame
    model = lrbench.build_model("digits-mlp", seed=0)
    data = lrbench.load_data("digits-mlp")
    est = lrbench.get_estimator("ulr", copies=32)
    lrbench.check_estimator("ulr")                                          # raises if non-conforming

Every function first registers the installed plugins (entry points; a broken one is skipped with a
:class:`PluginWarning`); ``load_plugins("my_module")`` imports more. Errors are the CLI's one-line error
types (``UserError``, ``EstimatorError``, ``TaskError``, ``ReportError``). The ``lrbench`` command
line calls the same functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - types only; importing them costs torch
    import pandas as pd
    from torch import nn

    from lrbench.conformance import ConformanceReport
    from lrbench.estimators import Estimator
    from lrbench.reports.load import Results
    from lrbench.tasks import TaskData, TaskSpec


class PluginWarning(UserWarning):
    """An installed plugin's entry point was skipped (import error, name clash, malformed object)."""


# --------------------------------------------------------------------------- plugins
def load_plugins(*modules: str) -> list[tuple[str, str]]:
    """Register the installed plugins' entry points (once) and import ``modules`` (names or .py paths).
    Returns the (kind, name) pairs the modules registered; a broken module raises ``PluginError``."""
    from lrbench import plugins

    for line in plugins.load_entry_points():
        warnings.warn(line, PluginWarning, stacklevel=2)
    return plugins.load_plugins(modules)


def origin(kind: str, name: str) -> str:
    """Where a registered ``kind`` (estimator, task, dataset, paper) came from: ``built-in``,
    ``entry point DIST VERSION``, ``--plugin MODULE``, ``suite FILE (plugin MODULE)``."""
    from lrbench import plugins

    return plugins.origin(kind, name)


# --------------------------------------------------------------------------- estimators
def get_estimator(name: str, **options: Any) -> Estimator:
    """The estimator ``name`` with validated options (``lrbench list estimators`` shows them)."""
    from lrbench.estimators import get_estimator as make

    load_plugins()
    return make(name, **options)


def list_estimators() -> list[dict[str, Any]]:
    """Every estimator: name, description, options (with defaults) and ``source``."""
    from lrbench.estimators import list_estimators as listed

    load_plugins()
    return [{**item, "source": origin("estimator", item["name"])} for item in listed()]


def check_estimator(estimator: str | type[Estimator], options: Mapping[str, Any] | None = None, *,
                    families: Sequence[str] | None = None, budget_s: float | None = None, seed: int = 0,
                    n: int | None = None, raise_on_failure: bool = True,
                    log: Callable[[str], None] | None = None) -> ConformanceReport:
    """The conformance check (lrbench.conformance.check_estimator): contract and Monte-Carlo statistics
    on one small float64 model per family. Raises ``ConformanceError`` on failure unless told not to."""
    from lrbench import conformance

    load_plugins()
    kwargs: dict[str, Any] = {"seed": seed, "n": n, "raise_on_failure": raise_on_failure, "log": log}
    if families is not None:
        kwargs["families"] = tuple(families)
    if budget_s is not None:
        kwargs["budget_s"] = budget_s
    return conformance.check_estimator(estimator, dict(options or {}), **kwargs)


# --------------------------------------------------------------------------- tasks
def get_task(name: str) -> TaskSpec:
    """The task spec ``name`` (dataset, model family, loss, metric, budget, estimator defaults)."""
    from lrbench.tasks import get_task as spec

    load_plugins()
    return spec(name)


def list_tasks() -> list[TaskSpec]:
    """Every task spec, variants and plugins' tasks included, sorted by name."""
    from lrbench.tasks import list_tasks as listed

    load_plugins()
    return listed()


def build_model(task: str, seed: int | None = 0, **model_options: Any) -> nn.Sequential:
    """A fresh model of ``task`` (``torch.manual_seed(seed)`` first unless ``seed`` is None; the global RNG
    is left as it was)."""
    import torch

    spec = get_task(task)
    if seed is None:
        return spec.build_model(**model_options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build_model(**model_options)


def load_data(task: str, data_dir: str | Path | None = None, device: Any = "cpu") -> TaskData:
    """The task's train/val/test tensors (data root: ``data_dir`` > $LRBENCH_DATA > ~/.cache/lrbench/data)."""
    return get_task(task).load_data(data_dir=data_dir, device=device)


# --------------------------------------------------------------------------- runs
def expand_suite(suite: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str] = (),
                 only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every resolved run config of ``suite`` (built-in name, YAML path or mapping; a single-run config
    is a suite of one) after ``overrides`` (``{"max_epochs": 1}`` or ``["max_epochs=1"]``), filtered by
    ``only`` (``["estimator=ulr"]``). Nothing runs; bad input raises a one-line ``UserError``."""
    from lrbench.suite.cli.suite_files import expand_suite as expand

    load_plugins()
    return expand(suite, overrides, only)


def run_suite(suite: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str] = (),
              only: Sequence[str] = (), out: str | Path = "results", progress: bool = False) -> list[dict[str, Any]]:
    """Run every config of ``suite`` not yet recorded in ``out`` and return the records of all of them
    (those run now and those read back from ``out/runs/``), in suite order. The same plan/execute
    pipeline as ``lrbench run``: every check (preflight) passes before anything is written."""
    from lrbench.suite.cli.plan import plan_suite
    from lrbench.suite.training.execute import execute
    from lrbench.suite.training.results_store import read_record

    load_plugins()
    plan = plan_suite(suite, overrides, only, out_dir=Path(out))
    result = execute(plan, progress=progress)
    fresh = {r["run_id"]: r for r in result.records}
    return [fresh.get(rid) or read_record(plan.out_dir, rid) for rid in plan.run_ids]


def run_config(config: Mapping[str, Any], out: str | Path = "results", progress: bool = False) -> dict[str, Any]:
    """Run one config (``{"task": ..., "estimator": ..., ...}``, the keys of docs/RESULTS.md; a single seed)
    and return its record (read back when ``out`` already holds it)."""
    from lrbench.suite.errors import UserError

    if "seeds" in config:
        raise UserError("run_config runs one seed: give 'seed', or use run_suite for 'seeds'")
    records = run_suite(dict(config), out=out, progress=progress)  # a mapping without grid/runs is one run
    return records[0]


# --------------------------------------------------------------------------- results
def load_results(folder: str | Path) -> Results:
    """Everything in a results folder: records, and the runs/history/gradient/robustness frames."""
    from lrbench.reports import load_results as load

    return load(folder)


def results_frame(folder: str | Path) -> pd.DataFrame:
    """The tidy table reports build: one row per run × scalar metric
    (``run_id, task, estimator, label, variant, seed, status, metric, value``)."""
    return load_results(folder).tidy()


def build_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML/Markdown report of a results folder (default ``FOLDER/report``); returns index.html."""
    from lrbench.reports import build_report as build

    return build(folder, Path(out) if out is not None else Path(folder) / "report")


__all__ = [
    "PluginWarning",
    "build_model",
    "build_report",
    "check_estimator",
    "expand_suite",
    "get_estimator",
    "get_task",
    "list_estimators",
    "list_tasks",
    "load_data",
    "load_plugins",
    "load_results",
    "origin",
    "results_frame",
    "run_config",
    "run_suite",
]
