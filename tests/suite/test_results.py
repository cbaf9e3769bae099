"""Results store: atomic JSON records, NaN -> null, final statuses."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lrbench.schema import config_hash
from lrbench.suite.training.results_store import is_done, read_record, record_path, write_record


def test_write_record_is_atomic_and_json_has_no_nan(tmp_path: Path) -> None:
    record = {"run_id": "t__bp__0123456789__s0", "status": "diverged",
              "metrics": {"train_loss_final": math.nan, "history": [{"train_loss": math.inf}]}}
    path = write_record(tmp_path, record)
    assert path == record_path(tmp_path, record["run_id"]) == tmp_path / "runs" / "t__bp__0123456789__s0.json"
    data = json.loads(path.read_text())
    assert data["metrics"]["train_loss_final"] is None and data["metrics"]["history"][0]["train_loss"] is None
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [path.name]  # no temporary file left


def test_is_done_keeps_completed_and_diverged_retries_failed(tmp_path: Path) -> None:
    for status in ("completed", "diverged", "failed"):
        write_record(tmp_path, {"run_id": status, "status": status})
    assert is_done(tmp_path, "completed") and is_done(tmp_path, "diverged")
    assert not is_done(tmp_path, "failed") and not is_done(tmp_path, "absent")
    (tmp_path / "runs" / "broken.json").write_text("{half")
    assert read_record(tmp_path, "broken") is None and not is_done(tmp_path, "broken")


def test_config_hash_is_canonical() -> None:
    a = {"task": "t", "lr": 0.1, "estimator_options": {"b": 1, "a": 2}, "seed": 0, "data_dir": "x"}
    b = {"data_dir": "y", "progress": False, "seed": 5, "estimator_options": {"a": 2, "b": 1}, "lr": 0.1, "task": "t"}
    assert config_hash(a) == config_hash(b) and len(config_hash(a)) == 10
    assert config_hash({**a, "lr": 0.2}) != config_hash(a)
