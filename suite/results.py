"""The results store: one JSON record per run under ``DIR/runs/`` (schema in docs/RESULTS.md).

    run_id = f"{task}__{estimator}__{hash10}__s{seed}"
    hash10 = sha256(canonical_json(config − {seed, out, data_dir, progress, wandb, threads}))[:10]

``canonical_json`` = ``json.dumps(sort_keys=True, separators=(",", ":"))``. A record is written atomically
(a temporary file in the same folder, then ``os.replace``), so a reader sees either no file or a whole
record; the record is written last, after the run's checkpoint, so its presence marks a finished run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
FINAL_STATUSES = ("completed", "diverged", "failed")
# Statuses a re-run of the suite keeps (skips); a 'failed' run is retried.
SKIPPED_STATUSES = ("completed", "diverged")
NON_RESULT_KEYS = ("seed", "out", "data_dir", "progress", "wandb", "threads")


def config_hash(config: Mapping[str, Any]) -> str:
    """First 10 hex digits of the SHA-256 of the canonical JSON of the config without non-result keys."""
    relevant = {k: v for k, v in config.items() if k not in NON_RESULT_KEYS}
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_id(config: Mapping[str, Any]) -> str:
    return f"{config['task']}__{config['estimator']}__{config_hash(config)}__s{config['seed']}"


def record_path(out_dir: Path | str, rid: str) -> Path:
    return Path(out_dir) / "runs" / f"{rid}.json"


def checkpoint_path(out_dir: Path | str, rid: str) -> Path:
    return Path(out_dir) / "checkpoints" / f"{rid}.pt"


def log_dir(out_dir: Path | str, rid: str) -> Path:
    return Path(out_dir) / "logs" / rid


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_record(out_dir: Path | str, record: Mapping[str, Any]) -> Path:
    """Atomically write ``record`` as ``DIR/runs/<run_id>.json``; returns the path."""
    path = record_path(out_dir, record["run_id"])
    text = json.dumps(finite(record), indent=2, sort_keys=False, allow_nan=False, default=_jsonable)
    atomic_write_bytes(path, (text + "\n").encode())
    return path


def finite(value: Any) -> Any:
    """Copy of ``value`` with NaN/±inf floats replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_record(out_dir: Path | str, rid: str) -> dict[str, Any] | None:
    """The record of ``rid``, or None when absent or unreadable (an unreadable file counts as absent)."""
    path = record_path(out_dir, rid)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(out_dir: Path | str, rid: str) -> bool:
    """True when a record with a status a re-run keeps (completed / diverged) exists."""
    record = read_record(out_dir, rid)
    return record is not None and record.get("status") in SKIPPED_STATUSES
