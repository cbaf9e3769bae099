"""wandb tracking (suite/training/tracking.py): offline run folder with the metrics, disabled = nothing at all,
no network = a warning and the run goes on, malformed settings = one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from lrbench.suite.cli.suite_files import expand_suite
from lrbench.suite.errors import UserError
from lrbench.suite.training import tracking
from lrbench.suite.training.runner import run_one

REPO = Path(__file__).resolve().parents[2]
STEPS = 6


def _config(**extra: object) -> dict:
    [config] = expand_suite({"runs": [{"task": "digits-mlp", "estimator": "bp"}]},
                            {"accelerator": "cpu", "progress": False, "max_steps": STEPS, "max_epochs": 1,
                             "train_subset": 192, "batch_size": 32, **extra})
    return config


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    return monkeypatch


# --------------------------------------------------------------------------- settings
def test_resolve_modes(clean_env: pytest.MonkeyPatch) -> None:
    assert tracking.resolve_wandb(None) is None and tracking.resolve_wandb(False) is None
    assert tracking.resolve_wandb(True).mode == "offline"  # offline unless asked online
    assert tracking.resolve_wandb("online").mode == "online"
    settings = tracking.resolve_wandb({"mode": "offline", "project": "p", "group": "g", "tags": "t"})
    assert (settings.mode, settings.project, settings.group, settings.tags) == ("offline", "p", "g", ("t",))
    clean_env.setenv("WANDB_MODE", "online")
    assert tracking.resolve_wandb(True).mode == "online"  # $WANDB_MODE chooses when the config does not
    assert tracking.resolve_wandb("offline").mode == "offline"  # ... and an explicit mode wins over it
    assert tracking.resolve_wandb(None) is None  # the environment alone never turns tracking on
    clean_env.setenv("WANDB_MODE", "disabled")
    assert tracking.resolve_wandb(True) is None and tracking.resolve_wandb("online") is None


@pytest.mark.parametrize("value, message", [
    ("sometimes", "wandb mode must be one of offline, online, disabled; got 'sometimes'"),
    ({"mode": "offline", "colour": "red"}, "wandb: unknown key 'colour'; valid keys: mode, project, entity, group, tags"),
    (3, "wandb must be true/false, a mode"),
])
def test_malformed_settings_are_one_line(clean_env: pytest.MonkeyPatch, value: object, message: str) -> None:
    with pytest.raises(UserError) as info:
        tracking.resolve_wandb(value)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_cli_rejects_bad_wandb_value_before_running(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "lrbench", "run", "quick", "--only", "task=digits-mlp",
                          "--only", "estimator=bp", "wandb=sometimes", "--out", str(tmp_path / "r")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == ("lrbench: error: wandb mode must be one of offline, online, disabled; "
                                  "got 'sometimes'")
    assert not (tmp_path / "r").exists()


def test_summary_metrics_are_flat() -> None:
    record = {"status": "completed", "run_id": "r", "hardware": {"world_size": 2},
              "metrics": {"val_accuracy_final": 0.9, "history": [{"step": 1}], "gradient_quality": None,
                          "throughput": {"samples_per_second": 10.0, "warmup_steps": 5},
                          "time_to_target": {"target": 0.9, "seconds": None}}}
    assert tracking.summary_metrics(record) == {
        "status": "completed", "run_id": "r", "world_size": 2, "val_accuracy_final": 0.9,
        "throughput/samples_per_second": 10.0, "throughput/warmup_steps": 5, "time_to_target/target": 0.9}


# --------------------------------------------------------------------------- runs
def test_offline_run_writes_a_run_folder_with_the_metrics(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("WANDB_MODE", "offline")
    record = run_one(_config(wandb=True), tmp_path)
    assert record["status"] == "completed"
    [run_dir] = sorted((tmp_path / "wandb").glob("offline-run-*"))
    logged = tracking.read_offline_run(run_dir)
    assert logged["finished"]
    steps = [row for row in logged["history"] if "train_loss" in row]
    assert len(steps) == STEPS  # one row per training step, as Lightning logged them
    csv_losses = [row["train_loss"] for row in steps]
    assert all(0.0 < v < 5.0 for v in csv_losses)
    summary = logged["summary"]
    m = record["metrics"]
    assert summary["val_accuracy_final"] == pytest.approx(m["val_accuracy_final"])
    assert summary["test_accuracy_best"] == pytest.approx(m["test_accuracy_best"])
    assert summary["throughput/samples_per_second"] == pytest.approx(m["throughput"]["samples_per_second"])
    assert summary["status"] == "completed" and summary["run_id"] == record["run_id"]
    assert summary["record"]["metrics"]["history"] == json.loads(json.dumps(m["history"]))
    assert json.loads((run_dir / "files" / tracking.RECORD_FILE).read_text())["run_id"] == record["run_id"]
    # the CSV log is still written next to it
    assert (tmp_path / "logs" / record["run_id"] / "metrics.csv").is_file()


def test_disabled_writes_nothing_and_waits_for_nothing(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("WANDB_MODE", "disabled")
    clean_env.setenv("WANDB_BASE_URL", "http://10.255.255.1:81")  # a black hole, were anything to call out
    start = time.perf_counter()
    tracker = tracking.start_tracking({"wandb": True}, tmp_path, "x")
    tracker.finish({"status": "completed"})
    assert time.perf_counter() - start < 0.05 and not tracker.active
    record = run_one(_config(wandb="online"), tmp_path)
    assert record["status"] == "completed" and not (tmp_path / "wandb").exists()
    # wandb is not even imported
    code = ("import sys; from lrbench.suite.training import tracking; t = tracking.start_tracking({'wandb': True}, sys.argv[1], 'x'); "
            "print(t.active, 'wandb' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sub")], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "WANDB_MODE": "disabled"})
    assert out.stdout.split() == ["False", "False"] and not (tmp_path / "sub").exists()


def test_online_without_network_warns_and_the_run_goes_on(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("WANDB_API_KEY", "x" * 40)
    clean_env.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    clean_env.setenv("LRBENCH_WANDB_INIT_TIMEOUT", "5")
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="wandb could not start .*continuing without wandb"):
        record = run_one(_config(wandb="online"), tmp_path)
    elapsed = time.perf_counter() - start
    assert record["status"] == "completed" and elapsed < 60


def test_online_without_api_key_falls_back_to_offline(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert not tracking.has_api_key()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = tracking.start_tracking({"wandb": "online", "task": "t"}, tmp_path, "no-key")
    try:
        assert any("tracking offline instead" in str(w.message) for w in caught)
        assert tracker.active and tracker.run_dir is not None and tracker.run_dir.name.startswith("offline-run-")
    finally:
        tracker.finish({"status": "completed", "run_id": "no-key", "metrics": {"val_accuracy_final": 0.5}})
    [run_dir] = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert tracking.read_offline_run(run_dir)["summary"]["val_accuracy_final"] == 0.5
