"""Variant labels: the readable name of a run's configuration in every table and figure legend.

A *variant* is a config without its seed. Its label is the estimator, its Monte-Carlo sample count
(``K`` copies, ``r`` probes, ``n`` directions) and its options that differ from the estimator's defaults
(``record.estimator_defaults``), then any other setting that varies among the estimator's runs on the
task: ``ulr K=16 layerwise prefix_sharing clean``. Records without recorded defaults (written before
they were) are labelled by the settings that vary: ``ulr (copies=64, baseline=clean, antithetic)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The config columns of a runs frame that define a variant (everything but seed and bookkeeping)."""
    return [c for c in runs.columns if c.startswith("cfg:")]


def variant_labels(runs: pd.DataFrame, exclude: Iterable[str] = ()) -> pd.Series:
    """Readable name per run: the estimator plus the config values that vary among that estimator's runs
    on the same task (model options of other tasks never leak into a label).

    ``exclude`` names config keys (display names, e.g. ``copies``) left out of the label because a figure
    shows them on an axis. Boolean switches print as their name when on and are omitted when off;
    ``none``/null values are omitted; a run with every varying switch off is ``<estimator> (plain)``.
    """
    exclude = set(exclude) | {"task", "estimator"}
    labels = pd.Series(index=runs.index, dtype=object)
    for (_, estimator), group in runs.groupby(["task", "estimator"], sort=False):
        varying = [c for c in config_columns(group)
                   if _display_key(c) not in exclude and group[c].astype(str).nunique(dropna=False) > 1]
        if "estimator_defaults" in group and group["estimator_defaults"].notna().all():
            for idx, row in group.iterrows():
                labels[idx] = _option_label(str(estimator), row, group, varying, exclude)
            continue
        for idx, row in group.iterrows():
            parts = [_format_setting(_display_key(c), row[c]) for c in varying]
            parts = [p for p in parts if p]
            if parts:
                labels[idx] = f"{estimator} ({', '.join(parts)})"
            else:  # every varying switch off: say so rather than print the bare name
                labels[idx] = f"{estimator} (plain)" if varying else str(estimator)
    return labels


# Display of estimator options in labels: the Monte-Carlo sample count is always shown (short name),
# other options only when they differ from the estimator's default (value alone where it names itself).
SAMPLE_COUNT_OPTIONS = {"copies": "K", "probes": "r", "directions": "n"}
_SHORT_NAMES = {"sigma": "σ"}
_VALUE_ONLY = frozenset({"injection", "baseline", "probe_mode", "noise"})


def _option_label(estimator: str, row: pd.Series, group: pd.DataFrame, varying: list[str], exclude: set[str]) -> str:
    """``ulr K=16 layerwise prefix_sharing clean``: the estimator, its sample count, its non-default options,
    then any other config value that varies among the estimator's runs on the task (``lr=0.01``)."""
    defaults = json.loads(row["estimator_defaults"])
    parts = []
    for column in config_columns(group):
        key = _display_key(column)
        if not column.startswith("cfg:opt.") or key in exclude or _missing(row[column]):
            continue
        if key in SAMPLE_COUNT_OPTIONS:
            parts.append(f"{SAMPLE_COUNT_OPTIONS[key]}={_plain_number(row[column])}")
        elif key in defaults and not _same(row[column], defaults[key]):
            parts.append(_short_setting(key, row[column]))
    for column in varying:
        if not column.startswith("cfg:opt."):
            parts.append(_format_setting(_display_key(column), _budget_text(column, row[column])))
    return " ".join([estimator, *[p for p in parts if p]])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, (list, tuple, dict)):
        return value == json.dumps(default, sort_keys=True)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, (int, float)):
        return float(value) == float(default)
    return value == default


def _plain_number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _short_setting(key: str, value: Any) -> str:
    if value is True:
        return key
    if value is False:
        return f"{key}=off"
    if key in _VALUE_ONLY:
        return str(value)
    return f"{_SHORT_NAMES.get(key, key)}={_plain_number(value)}"


def _budget_text(column: str, value: Any) -> Any:
    """``cfg:budget`` JSON -> ``forward_passes=same as ulr`` / ``forward_passes≤10000`` (other columns unchanged)."""
    if column != "cfg:budget" or not isinstance(value, str):
        return value
    budget = json.loads(value)
    if not isinstance(budget, dict):
        return value
    reference = budget.get("reference") or budget.get("same_as")
    if reference is not None:
        return f"{budget.get('unit')} of {reference_text(reference)}"
    return f"{budget.get('amount'):g} {budget.get('unit')}"


def reference_text(reference: Any) -> str:
    """A budget's ``same_as`` reference as text: ``ulr``; ``ulr (baseline=clean, antithetic=False)``."""
    if not isinstance(reference, dict):
        return str(reference)
    rest = [f"{str(k).split('.')[-1]}={v}" for k, v in reference.items() if k != "estimator"]
    name = str(reference.get("estimator", "run"))
    return f"{name} ({', '.join(rest)})" if rest else name


def natural_key(text: object) -> tuple:
    """Sort key that orders embedded numbers by value: ``copies=4`` < ``copies=16``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text)))


def display_name(column: str) -> str:
    """``cfg:opt.copies`` -> ``copies``; ``cfg:batch_size`` -> ``batch_size``."""
    return _display_key(column)


def _display_key(column: str) -> str:
    key = column.removeprefix("cfg:")
    return key.split(".", 1)[1] if key.startswith(("opt.", "model.")) else key


def _format_setting(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value in ("none", "null"):
        return ""
    if value is True or value == "true":
        return key
    if value is False or value == "false":
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{key}={value}"


