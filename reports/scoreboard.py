"""The scoreboard: per task, one row per variant, everything relative to BP, the first thing a report shows.

Columns (completed runs; a variant's *seeds* are its runs that differ only by seed):

* ``accuracy``: final test accuracy (validation when no test split), mean over seeds ± the Student-t 95 %
  half-width when n ≥ 2;
* ``Δ vs BP``: mean accuracy − the BP reference's mean accuracy;
* ``forward passes / FLOPs to target ×BP``: c_v / c_BP where c is the median over seeds of the cumulative
  cost at the first evaluation reaching the task's target (a seed that never reaches it counts as +∞, as
  in the performance profile; ∞ = the variant's median seed missed it); NaN when a record predates the
  cost fields or BP has no finite cost;
* ``peak memory ×BP``: mean peak training-step memory / the BP reference's mean;
* ``gradient cosine``: mean over seeds of the run's mean cosine to the BP gradient (BP itself: none).

The BP reference of a task is its BP variant with the most completed seeds (ties: the first label in
natural order). The best value of each column is marked (cosine: among the non-BP variants).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .labels import natural_key
from .stats import mean_ci

COST_UNITS = {"forward_passes": "ttt_forward_passes", "flops": "ttt_flops", "wall_seconds": "ttt_seconds"}


def accuracy_column(runs: pd.DataFrame) -> str:
    return "test_accuracy_final" if runs["test_accuracy_final"].notna().any() else "val_accuracy_final"


def cost_to_target(group: pd.DataFrame, column: str) -> float:
    """Median over seeds of the cost at the target: a seed that missed the target counts as +∞; NaN when a
    seed reached it but did not record this unit (older records), or the task has no target."""
    values = []
    for _, run in group.iterrows():
        if run["ttt_target"] != run["ttt_target"]:
            return math.nan
        reached = run["ttt_steps"] == run["ttt_steps"]
        if not reached:
            values.append(math.inf)
        elif run[column] != run[column]:
            return math.nan
        else:
            values.append(float(run[column]))
    return float(np.median(values)) if values else math.nan


def bp_reference(task_runs: pd.DataFrame) -> str | None:
    """The label of the task's BP reference variant (module docstring), or None without BP runs."""
    bp = task_runs[task_runs["estimator"] == "bp"]
    if bp.empty:
        return None
    counts = bp.groupby("label").size()
    best = max(counts)
    return sorted((label for label, n in counts.items() if n == best), key=natural_key)[0]


def scoreboard_values(runs: pd.DataFrame, units: tuple[str, ...] = ("forward_passes", "flops")) -> pd.DataFrame:
    """Numbers of the scoreboard, one row per (task, variant): ``task, label, estimator, n, not_completed,
    accuracy, accuracy_ci, delta_bp, <unit>_to_target_x_bp, memory_x_bp, grad_cosine, is_reference``."""
    metric = accuracy_column(runs)
    rows = []
    for task, task_runs in runs.groupby("task", sort=False):
        done = task_runs[task_runs["status"] == "completed"]
        reference = bp_reference(done)
        ref = done[done["label"] == reference] if reference is not None else done.iloc[0:0]
        ref_acc = ref[metric].mean() if not ref.empty else math.nan
        ref_mem = ref["peak_memory_bytes"].mean() if not ref.empty else math.nan
        ref_cost = {unit: cost_to_target(ref, COST_UNITS[unit]) if not ref.empty else math.nan for unit in units}
        for label, group in task_runs.groupby("label", sort=False):
            ok = group[group["status"] == "completed"]
            mean, half, n = mean_ci(ok[metric].tolist())
            row = {"task": task, "label": label, "estimator": group["estimator"].iloc[0], "n": n,
                   "not_completed": int((group["status"] != "completed").sum()), "accuracy": mean,
                   "accuracy_ci": half, "delta_bp": mean - ref_acc, "is_reference": label == reference}
            for unit in units:
                own = cost_to_target(ok, COST_UNITS[unit]) if not ok.empty else math.nan
                base = ref_cost[unit]
                row[f"{unit}_to_target_x_bp"] = own / base if math.isfinite(base) and base > 0 and own == own else math.nan
            memory = ok["peak_memory_bytes"].mean() if not ok.empty else math.nan
            row["memory_x_bp"] = memory / ref_mem if ref_mem == ref_mem and ref_mem > 0 else math.nan
            cosine = ok["grad_cosine"].dropna()
            row["grad_cosine"] = float(cosine.mean()) if len(cosine) else math.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    order = sorted(range(len(table)), key=lambda i: (natural_key(table.iloc[i]["task"]),
                                                     not table.iloc[i]["is_reference"],
                                                     natural_key(table.iloc[i]["label"])))
    return table.iloc[order].reset_index(drop=True)


def best_rows(values: pd.DataFrame, column: str, higher: bool, skip_reference: bool = False) -> list[int]:
    """Row positions holding the best finite value of ``column`` within each task."""
    best: list[int] = []
    for _, group in values.groupby("task", sort=False):
        candidates = group[~group["is_reference"]] if skip_reference else group
        finite = candidates[column][np.isfinite(candidates[column].astype(float))]
        if finite.empty:
            continue
        target = finite.max() if higher else finite.min()
        best += [int(i) for i in finite.index[finite == target]]
    return best
