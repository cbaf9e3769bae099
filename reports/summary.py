"""The compact result table ``lrbench run`` prints at its end: task × variant, from run records only.

Each cell: the mean final test accuracy over the variant's completed seeds, then its forward passes to
the task's target relative to BP (``×0.41``; ``×∞`` = never reached, no factor when not recorded or BP
has none), or the status when no seed completed (``failed``, ``diverged``). Columns are the estimators
when each has one variant per task (the variants are listed under the table); with several variants of
an estimator, one row per variant label and one column per task instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .labels import natural_key
from .load import runs_frame
from .scoreboard import scoreboard_values
from .stats import sig3


def _cell(row: Any, statuses: set[str]) -> str:
    if row["n"] == 0:  # no seed completed: say how they ended
        return "/".join(sorted(statuses)) or "—"
    text = sig3(row["accuracy"])
    factor = row["forward_passes_to_target_x_bp"]
    if row["is_reference"]:
        text += " (BP)"
    elif factor == factor:
        text += " ×∞" if math.isinf(factor) else f" ×{sig3(factor)}"
    if row["not_completed"]:
        text += f" ({int(row['not_completed'])} not completed)"
    return text


def run_summary(records: Iterable[dict[str, Any]]) -> str:
    """The table as text (module docstring); '' without records."""
    records = [r for r in records if isinstance(r, dict) and isinstance(r.get("config"), dict)]
    if not records:
        return ""
    runs = runs_frame(records)
    values = scoreboard_values(runs, ("forward_passes",))
    statuses = runs.groupby(["task", "label"])["status"].apply(set)
    by_estimator = values.groupby(["task", "estimator"]).size().max() == 1
    values["variant"] = values["estimator"] if by_estimator else values["label"]
    variants = sorted(values["variant"].unique(), key=lambda c: (c != "bp", natural_key(c)))
    tasks = sorted(values["task"].unique(), key=natural_key)

    def cell(task: str, variant: str) -> str:
        match = values[(values["task"] == task) & (values["variant"] == variant)]
        if match.empty:
            return ""
        row = match.iloc[0]
        return _cell(row, statuses[(row["task"], row["label"])])

    if by_estimator:  # task rows, estimator columns (the variants are listed under the table)
        table = [["task", *variants], *[[str(t), *[cell(t, v) for v in variants]] for t in tasks]]
    else:  # many variants: a row each, task columns
        table = [["variant", *tasks], *[[str(v), *[cell(t, v) for t in tasks]] for v in variants]]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("cells: mean final test accuracy; ×: forward passes to the task's target relative to BP "
                 "(×∞: target not reached)")
    if by_estimator:
        for estimator in variants:
            labels = values[values["estimator"] == estimator].groupby("label")["task"].apply(list)
            if len(labels) == 1 and labels.index[0] == estimator:
                continue
            shown = "; ".join(label + ("" if len(labels) == 1 else f" ({', '.join(tasks_)})")
                              for label, tasks_ in labels.items())
            lines.append(f"{estimator}: {shown}")
    return "\n".join(lines)
