"""Result files -> tidy pandas frames.

``load_results(DIR)`` reads every ``DIR/runs/*.json`` (schema: docs/RESULTS.md) into a :class:`Results`
holding one frame per kind of measurement. Column conventions of ``Results.runs`` (one row per run):

* identity: ``run_id, task, estimator, seed, status, message, variant`` (``variant`` = hash of the
  config without the seed: the runs that differ only by seed share it);
* config: top-level keys as they are (``batch_size``, ``lr``, ...), estimator options as ``opt.<key>``,
  model options as ``model.<key>``; lists and dicts are kept as their JSON text so they can be grouped;
* axes: ``copies`` (total over blocks when given per block), ``probes``, ``depth`` (numbers or NaN);
* metrics: ``val_accuracy_final``, ``test_accuracy_final``, ``ttt_seconds``, ``peak_memory_bytes``,
  ``samples_per_second``, ``grad_cosine``, ... (see ``_METRIC_PATHS``);
* metadata: ``git_commit``, ``version.<package>``, ``hardware.<key>``, ``started_at``, ``duration_s``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lrbench.schema import NON_RESULT_KEYS

from .errors import ReportError

# Config keys that never change a result (lrbench.schema): ignored when grouping runs into variants.
BOOKKEEPING_KEYS = frozenset(NON_RESULT_KEYS)

# Flat metric column -> path inside the run JSON's ``metrics``.
_METRIC_PATHS: dict[str, tuple[str, ...]] = {
    "val_accuracy_final": ("val_accuracy_final",),
    "val_accuracy_best": ("val_accuracy_best",),
    "test_accuracy_final": ("test_accuracy_final",),
    "test_accuracy_best": ("test_accuracy_best",),
    "train_loss_final": ("train_loss_final",),
    "ttt_target": ("time_to_target", "target"),
    "ttt_seconds": ("time_to_target", "seconds"),
    "ttt_steps": ("time_to_target", "steps"),
    "peak_memory_bytes": ("peak_memory_bytes", "max"),
    "cuda_allocator_peak": ("peak_memory_bytes", "cuda_allocator_peak"),
    "samples_per_second": ("throughput", "samples_per_second"),
    "step_time_seconds": ("throughput", "step_time_seconds"),
    "forward_passes_per_step": ("throughput", "forward_passes_per_step"),
    "flops_per_step": ("throughput", "flops_per_step"),
    "grad_cosine": ("gradient_quality", "mean_cosine"),
    "grad_relative_error": ("gradient_quality", "mean_relative_error"),
    "grad_norm_ratio": ("gradient_quality", "mean_norm_ratio"),
    "robust_clean": ("robustness", "clean"),
}
METRIC_COLUMNS: tuple[str, ...] = tuple(_METRIC_PATHS)

# Robustness keys of docs/RESULTS.md: attack name -> family shown in the figures.
ATTACK_FAMILIES = {"fgsm": "white-box", "pgd_linf": "white-box", "pgd_l2": "white-box",
                   "transfer_fgsm": "transfer", "transfer_pgd": "transfer"}

_DEPTH_KEYS = ("depth", "num_layers", "layers", "blocks", "num_blocks", "widths", "channels")  # list -> its length


@dataclass
class Results:
    """Everything read from one results folder (frames are empty, with their columns, when absent)."""

    root: Path
    records: list[dict[str, Any]]
    runs: pd.DataFrame
    history: pd.DataFrame
    grad_points: pd.DataFrame
    robustness: pd.DataFrame
    skipped_files: list[str] = field(default_factory=list)

    @property
    def completed(self) -> pd.DataFrame:
        """Runs whose status is ``completed``."""
        return self.runs[self.runs["status"] == "completed"]

    @property
    def unfinished(self) -> pd.DataFrame:
        """Runs that failed or diverged (always listed in reports, never dropped silently)."""
        return self.runs[self.runs["status"] != "completed"]

    def tidy(self) -> pd.DataFrame:
        """One row per run x scalar metric: ``run_id, task, estimator, label, seed, status, metric, value``."""
        present = [c for c in METRIC_COLUMNS if c in self.runs]
        ids = ["run_id", "task", "estimator", "label", "variant", "seed", "status"]
        tidy = self.runs[ids + present].melt(id_vars=ids, value_vars=present, var_name="metric",
                                             value_name="value")
        return tidy.dropna(subset=["value"]).sort_values(["run_id", "metric"]).reset_index(drop=True)


def load_results(root: str | Path) -> Results:
    """Read ``root/runs/*.json`` (or ``root`` itself when it holds the JSON files).

    Raises :class:`ReportError` (one line) when the folder is missing or holds no readable run.
    Files that are not run records (bad JSON, no ``run_id``) are skipped and named in
    ``Results.skipped_files``.
    """
    root = Path(root)
    if not root.exists():
        raise ReportError(f"results folder '{root}' does not exist")
    if not root.is_dir():
        raise ReportError(f"'{root}' is not a folder; give the results folder that holds runs/*.json")
    run_dir = root / "runs" if (root / "runs").is_dir() else root
    files = sorted(run_dir.glob("*.json"))
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    for path in files:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            skipped.append(path.name)
            continue
        if not isinstance(record, dict) or "run_id" not in record or not isinstance(record.get("config"), dict):
            skipped.append(path.name)
            continue
        records.append(record)
    if not records:
        extra = f" ({len(skipped)} unreadable file(s): {', '.join(skipped[:3])})" if skipped else ""
        raise ReportError(f"no run results in '{root}': expected {run_dir}/*.json as written by "
                          f"'lrbench run'{extra}")
    runs = runs_frame(records)
    return Results(root=root, records=records, runs=runs, history=_history_frame(records, runs),
                   grad_points=_grad_points_frame(records, runs), robustness=_robustness_frame(records, runs),
                   skipped_files=skipped)


def runs_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per run record (see the module docstring for the columns)."""
    rows = [_run_row(r) for r in records]
    frame = pd.DataFrame(rows)
    frame["label"] = variant_labels(frame)
    return frame.sort_values(["task", "estimator", "label", "seed"], kind="stable").reset_index(drop=True)


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
        for idx, row in group.iterrows():
            parts = [_format_setting(_display_key(c), row[c]) for c in varying]
            parts = [p for p in parts if p]
            if parts:
                labels[idx] = f"{estimator} ({', '.join(parts)})"
            else:  # every varying switch off: say so rather than print the bare name
                labels[idx] = f"{estimator} (plain)" if varying else str(estimator)
    return labels


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


def _run_row(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config") or {}
    metrics = record.get("metrics") or {}
    seed = record.get("seed", config.get("seed"))
    row: dict[str, Any] = {
        "run_id": record["run_id"],
        "task": config.get("task", "?"),
        "estimator": config.get("estimator", "?"),
        "seed": int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else seed,
        "status": record.get("status") or "unknown",
        "message": record.get("message"),
    }
    flat_config: dict[str, Any] = {}
    for key, value in _without_seed_of_sources(config).items():
        if key in BOOKKEEPING_KEYS:
            continue
        if key in ("estimator_options", "model_options") and isinstance(value, dict):
            prefix = "opt." if key == "estimator_options" else "model."
            for sub, subvalue in value.items():
                if sub != "seed":
                    flat_config[f"cfg:{prefix}{sub}"] = _scalar(subvalue)
        else:
            flat_config[f"cfg:{key}"] = _scalar(value)
    row.update(flat_config)
    row["variant"] = hashlib.sha256(json.dumps(flat_config, sort_keys=True, default=str).encode()).hexdigest()[:10]
    options = config.get("estimator_options") or {}
    model_options = config.get("model_options") or {}
    row["copies"] = _total(options.get("copies"))
    row["probes"] = _total(options.get("probes"))
    row["batch_size"] = _total(config.get("batch_size"))
    row["depth"] = next((_depth(model_options[k]) for k in _DEPTH_KEYS if k in model_options), math.nan)
    for column, path in _METRIC_PATHS.items():
        row[column] = _number(_get(metrics, path))
    row["git_commit"] = record.get("git_commit")
    for package, version in (record.get("versions") or {}).items():
        row[f"version.{package}"] = version
    for key, value in (record.get("hardware") or {}).items():
        row[f"hardware.{key}"] = value
    row["started_at"] = record.get("started_at")
    row["finished_at"] = record.get("finished_at")
    start, end = pd.to_datetime(row["started_at"], errors="coerce", utc=True), pd.to_datetime(
        row["finished_at"], errors="coerce", utc=True)
    row["duration_s"] = (end - start).total_seconds() if pd.notna(start) and pd.notna(end) else math.nan
    return row


def _history_frame(records: list[dict[str, Any]], runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for record in records:
        for point in (record.get("metrics") or {}).get("history") or []:
            if isinstance(point, dict):
                rows.append({"run_id": record["run_id"], **{k: _number(v) for k, v in point.items()}})
    columns = ["run_id", "epoch", "step", "train_loss", "val_accuracy", "test_accuracy", "wall_time"]
    return _with_run_columns(pd.DataFrame(rows, columns=None if rows else columns), runs)


def _grad_points_frame(records: list[dict[str, Any]], runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for record in records:
        quality = (record.get("metrics") or {}).get("gradient_quality") or {}
        for point in quality.get("points") or []:
            if isinstance(point, dict):
                rows.append({"run_id": record["run_id"], **{k: _number(v) for k, v in point.items()}})
    columns = ["run_id", "step", "cosine", "relative_error", "norm_ratio"]
    return _with_run_columns(pd.DataFrame(rows, columns=None if rows else columns), runs)


def _robustness_frame(records: list[dict[str, Any]], runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame: ``run_id, family (clean|white-box|transfer|corruption), kind, level, accuracy``."""
    rows = []
    for record in records:
        robust = (record.get("metrics") or {}).get("robustness")
        if not isinstance(robust, dict):
            continue
        if _number(robust.get("clean")) == _number(robust.get("clean")):  # not NaN
            rows.append({"run_id": record["run_id"], "family": "clean", "kind": "clean", "level": 0.0,
                         "accuracy": _number(robust.get("clean"))})
        for kind, family in ATTACK_FAMILIES.items():
            for eps, acc in (robust.get(kind) or {}).items():
                rows.append({"run_id": record["run_id"], "family": family, "kind": kind,
                             "level": _number(eps), "accuracy": _number(acc)})
        for name, severities in (robust.get("corruptions") or {}).items():
            for severity, acc in (severities or {}).items():
                rows.append({"run_id": record["run_id"], "family": "corruption", "kind": name,
                             "level": _number(severity), "accuracy": _number(acc)})
    columns = ["run_id", "family", "kind", "level", "accuracy"]
    return _with_run_columns(pd.DataFrame(rows, columns=columns), runs)


def _with_run_columns(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Attach the identity columns of each run (task, estimator, label, ...) to a per-point frame."""
    keep = ["run_id", "task", "estimator", "label", "variant", "seed", "status", "copies", "probes",
            "batch_size", "depth"]
    return frame.merge(runs[keep], on="run_id", how="left")


def _get(mapping: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _number(value: Any) -> float:
    """Float of a JSON number or numeric string; NaN for null, booleans and anything else."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _total(value: Any) -> float:
    """A count given as a number or per block as a list -> the total (NaN when absent)."""
    if isinstance(value, (list, tuple)):
        numbers = [_number(v) for v in value]
        return float(sum(numbers)) if numbers and all(n == n for n in numbers) else math.nan
    return _number(value)


def _depth(value: Any) -> float:
    return float(len(value)) if isinstance(value, (list, tuple)) else _number(value)


_RUN_ID_SEED = re.compile(r"^(.+__[0-9a-f]{10})__s-?\d+$")


def _source_variant(value: Any) -> Any:
    """A run id names one seed of a variant; as a *source* (``init_from``, a transfer surrogate) what makes
    two runs the same variant is the source's variant: ``task__est__hash__s3`` -> ``task__est__hash``."""
    match = _RUN_ID_SEED.match(value) if isinstance(value, str) else None
    return match.group(1) if match else value


def _without_seed_of_sources(config: dict[str, Any]) -> dict[str, Any]:
    """The config with run-id references to other runs (``init_from``, ``robustness.transfer_source``)
    reduced to their variant, so that the seeds of one variant — each pointing at its own seed's source —
    group together."""
    out = dict(config)
    if "init_from" in config:
        out["init_from"] = _source_variant(config["init_from"])
    robustness = config.get("robustness")
    if isinstance(robustness, dict) and "transfer_source" in robustness:
        out["robustness"] = {**robustness, "transfer_source": _source_variant(robustness["transfer_source"])}
    return out


def _scalar(value: Any) -> Any:
    """Lists/dicts -> canonical JSON text (hashable, groupable); scalars unchanged."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return value
