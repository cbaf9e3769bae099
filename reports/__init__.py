"""lrbench.reports: result files -> tidy tables, seaborn figures, HTML/Markdown reports, paper figures.

Reads ``DIR/runs/*.json`` (schema in docs/RESULTS.md) with pandas and never imports torch, so a report
can be rebuilt on any machine from a results folder::

    from lrbench.reports import build_report
    build_report("results/", "results/report")      # -> results/report/index.html

Attributes are imported lazily so that ``reports.errors`` stays cheap to import (the CLI needs only it).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ReportError

_LAZY = {"build_report": "build", "Results": "load", "load_results": "load"}

__all__ = ["ReportError", "Results", "build_report", "load_results"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'reports' has no attribute '{name}'")
