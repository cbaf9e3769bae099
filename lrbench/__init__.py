"""lrbench: backpropagation against forward-only gradient estimators, benchmarked.

The project's packages live under this one namespace (their folders stay at the top of the checkout and
are mapped here by ``pyproject.toml``):

* ``lrbench.estimators`` — the gradient estimators behind one interface (torch only);
* ``lrbench.tasks`` — datasets, model families, task specs;
* ``lrbench.suite`` — the ``lrbench`` command line, Lightning training, results store, metrics;
* ``lrbench.reports`` — reports and paper figures from result files only (no torch);
* ``lrbench.plugins`` / ``lrbench.conformance`` — third-party estimators, tasks and paper specs, and the
  conformance check of an estimator.

The public API (``lrbench.api``, docs/API.md) is re-exported here lazily, so ``import lrbench`` imports
neither torch nor pandas: ``lrbench.run_suite(...)``, ``lrbench.results_frame(...)``,
``lrbench.build_model(...)``, ``lrbench.get_estimator(...)``, ``lrbench.check_estimator(...)``.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("lrbench")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

_API = ("PluginWarning", "build_model", "build_report", "check_estimator", "expand_suite", "get_estimator",
        "get_task", "list_estimators", "list_tasks", "load_data", "load_plugins", "load_results", "origin",
        "results_frame", "run_config", "run_suite")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module 'lrbench' has no attribute '{name}'")
