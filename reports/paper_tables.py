"""Paper tables: the runs a spec item selects, our numbers (mean ± 95 % CI over seeds) beside the
published ones, and their comparison."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .load import Results, natural_key
from .paper_spec import FIELD_PATTERN, MIB, OURS_COLUMNS, PaperSpec
from .stats import mean_ci


def column_for(key: str) -> str:
    """Config/metric key of a spec -> column of ``Results.runs`` (``estimator_options.probes`` ->
    ``cfg:opt.probes``; metrics and the numeric axes ``copies``/``probes``/``batch_size``/``depth`` as is)."""
    if key.startswith("estimator_options."):
        return "cfg:opt." + key.split(".", 1)[1]
    if key.startswith("model_options."):
        return "cfg:model." + key.split(".", 1)[1]
    return key


def _start(row: pd.Series) -> str:
    """How a run's weights started: ``fine-tuned`` (``init_from`` set) or ``from scratch``."""
    return "fine-tuned" if field_value(row, "init_from") else "from scratch"


def _training_sigma(row: pd.Series) -> float:
    """The scale of a run's training noise: ``estimator_options.sigma``, or 0 for a noise-free estimator."""
    sigma = field_value(row, "estimator_options.sigma")
    return 0.0 if sigma is None else float(sigma)


# Label fields computed from a row rather than read from a column.
DERIVED_FIELDS = {"start": _start, "training_sigma": _training_sigma}


def field_value(row: pd.Series, key: str) -> Any:
    """Value of ``key`` in a runs row (config keys under their ``cfg:`` column when not a column themselves;
    ``DERIVED_FIELDS`` such as ``start``)."""
    if key in DERIVED_FIELDS:
        return DERIVED_FIELDS[key](row)
    for column in (column_for(key), f"cfg:{key}"):
        if column in row.index:
            value = row[column]
            return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return None


def format_label(row: pd.Series, patterns: str | list[str]) -> str | None:
    """First pattern of ``patterns`` whose ``{fields}`` all exist in ``row``, filled in (None if none)."""
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        values = {}
        for key in FIELD_PATTERN.findall(pattern):
            value = field_value(row, key)
            if value is None:
                break
            values[key] = f"{int(value)}" if isinstance(value, float) and value.is_integer() else str(value)
        else:
            return FIELD_PATTERN.sub(lambda m, filled=values: filled[m.group(1)], pattern)
    return None


def select_runs(results: Results, where: dict[str, Any] | None, completed: bool = True) -> pd.DataFrame:
    """Runs matching ``where`` ({key: value or [values]}): the completed ones, or (``completed=False``)
    the failed and diverged ones."""
    runs = results.completed if completed else results.unfinished
    for key, wanted in (where or {}).items():
        accepted = {str(w) for w in (wanted if isinstance(wanted, list) else [wanted])}
        runs = runs[[_as_text(field_value(row, key)) in accepted for _, row in runs.iterrows()]]
    return runs


def _as_text(value: Any) -> str:
    """Text of a field for matching: whole floats as integers (``128.0`` matches ``128``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- drawing
def metric_values(runs: pd.DataFrame, item: dict[str, Any], results: Results) -> pd.Series:
    """A runs column, or ``ATTACK@ε`` (``fgsm@0.13``, ``transfer_fgsm@0.13``): that attack's accuracy from
    the robustness frame (NaN where a run has none)."""
    metric = item["metric"]
    if metric not in runs.columns and "@" in metric:
        kind, level = metric.split("@", 1)
        robust = results.robustness
        hits = robust[(robust["kind"] == kind) & (robust["level"] == float(level))]
        values = runs["run_id"].map(hits.set_index("run_id")["accuracy"]).astype(float)
    else:
        values = runs[metric].astype(float)
    return values / MIB if item.get("unit") == "MiB" else values


def table_runs(item: dict[str, Any], results: Results) -> pd.DataFrame:
    """One row per completed run of a ``table`` item: ``row, col, x, value, variant``."""
    runs = select_runs(results, item.get("where"))
    if runs.empty:
        return pd.DataFrame(columns=["row", "col", "x", "value", "variant"])
    frame = pd.DataFrame({"row": runs.apply(lambda r: format_label(r, item["row"]), axis=1),
                          "x": runs.apply(lambda r: field_value(r, item["col"]), axis=1),
                          "value": metric_values(runs, item, results), "variant": runs["variant"]}).dropna()
    frame["x"] = frame["x"].astype(float)
    frame["col"] = frame["x"].map(lambda x: col_label(item, x))
    return frame[["row", "col", "x", "value", "variant"]]


def ours_table(spec: PaperSpec, item: dict[str, Any], results: Results) -> pd.DataFrame:
    """Long frame ``row, col, x, mean, ci95, n, variants`` of our runs for a ``table`` item (``variants``:
    distinct configurations pooled in the cell — more than one means the folder mixes settings)."""
    rows = []
    for (row, col, x), group in table_runs(item, results).groupby(["row", "col", "x"]):
        mean, half, n = mean_ci(group["value"].tolist())
        rows.append({"row": row, "col": col, "x": x, "mean": mean, "ci95": half, "n": n,
                     "variants": group["variant"].nunique()})
    return pd.DataFrame(rows, columns=OURS_COLUMNS)


def published_table(spec: PaperSpec, item: dict[str, Any]) -> pd.DataFrame:
    """Long frame ``row, col, x, value`` of the published numbers (empty when the paper gives none)."""
    pub = spec.published if item.get("published", True) else None
    if not pub or "values" not in pub:
        return pd.DataFrame(columns=["row", "col", "x", "value"])
    rows = []
    for row, values in zip(pub["rows"], pub["values"], strict=True):
        for x, value in zip(pub["cols"], values, strict=True):
            rows.append({"row": str(row), "col": col_label(item, x), "x": float(x), "value": float(value)})
    return pd.DataFrame(rows)


def compare(ours: pd.DataFrame, published: pd.DataFrame) -> dict[str, Any]:
    """Numbers that say how our table compares with the published one on their common cells."""
    both = ours.merge(published, on=["row", "col", "x"], how="inner")
    if both.empty:
        return {"cells": 0}
    diff = both["mean"] - both["value"]
    out: dict[str, Any] = {"cells": len(both), "mean_diff": float(diff.mean()),
                           "max_abs_diff": float(diff.abs().max()),
                           "worst_cell": f"{both.loc[diff.abs().idxmax(), 'row']}, {both.loc[diff.abs().idxmax(), 'col']}"}
    if len(both) >= 3 and both["mean"].nunique() > 1 and both["value"].nunique() > 1:
        out["spearman"] = float(both["mean"].rank().corr(both["value"].rank()))
    # Row order: does the ranking of rows (averaged over the common columns) agree with the paper's?
    by_row = both.groupby("row")[["mean", "value"]].mean()
    out["row_order_ours"] = list(by_row["mean"].sort_values(ascending=False).index)
    out["row_order_published"] = list(by_row["value"].sort_values(ascending=False).index)
    return out


def col_label(item: dict[str, Any], x: Any) -> str:
    x = float(x)
    text = f"{int(x)}" if x.is_integer() else f"{x:g}"
    return item.get("col_format", "{}").format(text)


def pivot(frame: pd.DataFrame, value: str, row_order: list[str]) -> pd.DataFrame:
    table = frame.pivot(index="row", columns="col", values=value)
    cols = sorted(table.columns, key=natural_key)
    rows = [r for r in row_order if r in table.index] + sorted(
        (r for r in table.index if r not in row_order), key=natural_key)
    table = table.loc[rows, cols]
    table.index.name = None
    return table.reset_index().rename(columns={"index": ""})
