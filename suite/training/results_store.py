"""The results store: one JSON record per run under ``DIR/runs/`` (schema: lrbench/schema.py, docs/RESULTS.md).

A record is written atomically (a temporary file in the same folder, then ``os.replace``), so a reader
sees either no file or a whole record; the record is written last, after the run's checkpoint, so its
presence marks a finished run. Run ids, the record's keys and statuses are defined in ``lrbench.schema``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrbench.schema import SKIPPED_STATUSES
from lrbench.suite.errors import UserError


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


def resolve_checkpoint(value: str, out_dir: Path) -> Path:
    """``init_from`` / transfer source: a checkpoint path, or a run id of ``out_dir`` with a checkpoint."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    candidate = checkpoint_path(out_dir, value)
    if candidate.is_file():
        return candidate
    raise UserError(f"checkpoint '{value}' not found (neither a file nor a run id with "
                    f"{candidate.relative_to(out_dir)} under {out_dir})")
