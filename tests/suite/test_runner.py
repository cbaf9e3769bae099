"""lrbench run: one run's record, determinism, divergence, failures, resume after a kill, init_from."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lrbench.schema import run_id
from lrbench.suite.cli.main import main
from lrbench.suite.cli.plan import plan_configs
from lrbench.suite.cli.suite_files import expand_suite
from lrbench.suite.training.execute import execute
from lrbench.suite.training.results_store import checkpoint_path, record_path
from lrbench.suite.training.runner import run_one

REPO = Path(__file__).resolve().parents[2]
WALL_CLOCK = {("throughput", "samples_per_second"), ("throughput", "step_time_seconds"),
              ("time_to_target", "seconds")}
TOP_LEVEL = ("schema_version", "run_id", "config", "seed", "git_commit", "versions", "hardware", "started_at",
             "finished_at", "status", "message", "metrics")
METRICS = ("val_accuracy_final", "val_accuracy_best", "test_accuracy_final", "test_accuracy_best",
           "train_loss_final", "time_to_target", "history", "peak_memory_bytes", "throughput",
           "gradient_quality", "robustness")


def configs(runs: list[dict[str, Any]], **overrides: Any) -> list[dict[str, Any]]:
    return expand_suite({"runs": runs}, {"accelerator": "cpu", "progress": False, **overrides})


def without_wall_clock(metrics: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(metrics))
    for group, key in WALL_CLOCK:
        out[group][key] = None
    for row in out["history"]:
        row["wall_time"] = None
    return out


def test_run_one_digits_mlp_bp_fills_every_field(tmp_path: Path) -> None:
    [config] = configs([{"task": "digits-mlp", "estimator": "bp", "max_epochs": 3}])
    record = run_one(config, tmp_path)
    path = record_path(tmp_path, record["run_id"])
    assert json.loads(path.read_text()) == json.loads(json.dumps(record))
    assert tuple(record) == TOP_LEVEL and tuple(record["metrics"]) == METRICS
    assert record["schema_version"] == 1 and record["status"] == "completed" and record["message"] is None
    assert record["run_id"] == run_id(config) and record["seed"] == 0
    assert len(record["git_commit"]) == 40
    assert all(record["versions"][k] for k in ("lrbench", "python", "torch", "pytorch_lightning", "numpy"))
    assert record["hardware"]["device_type"] == "cpu" and record["hardware"]["world_size"] == 1
    assert record["started_at"] <= record["finished_at"]
    m = record["metrics"]
    assert m["test_accuracy_final"] > 0.85 and m["val_accuracy_best"] >= m["val_accuracy_final"] > 0.85
    assert [row["epoch"] for row in m["history"]] == [0, 1, 2]
    assert all(set(row) == {"epoch", "step", "train_loss", "val_accuracy", "test_accuracy", "wall_time"}
               for row in m["history"])
    walls = [row["wall_time"] for row in m["history"]]
    assert walls == sorted(walls) and walls[0] > 0
    ttt = m["time_to_target"]
    assert ttt["target"] == 0.9 and ttt["metric"] == "val_accuracy" and ttt["steps"] in [r["step"] for r in m["history"]]
    assert 0 < ttt["seconds"] <= walls[-1]
    mem = m["peak_memory_bytes"]
    assert mem["definition"] == "live_tensor_bytes" and mem["max"] == mem["per_device"][0] > 0
    assert mem["cuda_allocator_peak"] is None
    tp = m["throughput"]
    assert tp["samples_per_second"] > 0 and tp["step_time_seconds"] > 0 and tp["warmup_steps"] == 5
    assert tp["timed_steps"] == m["history"][-1]["step"] - 5
    assert tp["forward_passes_per_step"] == 1.0
    # MLP 64->64->10 at batch 32: forward F = 2·32·(64·64 + 64·10) matmul FLOPs; backward = 2F minus the
    # input gradient of the first layer (the data needs none)
    forward = 2 * 32 * (64 * 64 + 64 * 10)
    assert tp["flops_per_step"] == 3 * forward - 2 * 32 * 64 * 64
    assert m["gradient_quality"] is None and m["robustness"] is None
    assert checkpoint_path(tmp_path, record["run_id"]).is_file()
    assert (tmp_path / "logs" / record["run_id"] / "metrics.csv").is_file()


def test_same_config_twice_gives_identical_metrics(tmp_path: Path) -> None:
    [config] = configs([{"task": "digits-mlp", "estimator": "ulr", "max_epochs": 2, "train_subset": 300,
                         "grad_quality_every": 5,
                         "estimator_options": {"copies": 16, "baseline": "clean", "injection": "layerwise"}}])
    first = run_one(config, tmp_path / "a")
    second = run_one(first["config"], tmp_path / "b")  # the stored config reproduces the run
    assert first["status"] == second["status"] == "completed" and first["run_id"] == second["run_id"]
    assert without_wall_clock(first["metrics"]) == without_wall_clock(second["metrics"])
    gq = first["metrics"]["gradient_quality"]
    assert gq["every"] == 5 and [p["step"] for p in gq["points"]] == list(range(0, 20, 5))
    assert 0.3 < gq["mean_cosine"] < 1.0 and gq["mean_relative_error"] > 0
    with open(tmp_path / "a" / "logs" / first["run_id"] / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("grad_cosine")]
    assert [int(row["step"]) for row in rows] == [p["step"] for p in gq["points"]]
    assert [float(row["grad_cosine"]) for row in rows] == pytest.approx([p["cosine"] for p in gq["points"]])


def test_gradient_quality_does_not_disturb_training(tmp_path: Path) -> None:
    base = {"task": "digits-mlp", "estimator": "ulr", "max_epochs": 1, "train_subset": 200,
            "estimator_options": {"copies": 4}}
    [measured] = configs([{**base, "grad_quality_every": 1}])
    [plain] = configs([{**base, "grad_quality_every": None}])
    a, b = run_one(measured, tmp_path), run_one(plain, tmp_path)
    assert len(a["metrics"]["gradient_quality"]["points"]) == a["metrics"]["history"][-1]["step"]
    assert b["metrics"]["gradient_quality"]["points"] == []
    strip = [{k: v for k, v in row.items() if k != "wall_time"} for row in a["metrics"]["history"]]
    assert strip == [{k: v for k, v in row.items() if k != "wall_time"} for row in b["metrics"]["history"]]


def test_huge_lr_diverges_and_the_suite_goes_on(tmp_path: Path) -> None:
    runs = configs([{"task": "digits-mlp", "estimator": "bp", "optimizer": "sgd", "lr": 1e30, "max_epochs": 1},
                    {"task": "digits-mlp", "estimator": "bp", "max_epochs": 1, "train_subset": 200}])
    result = execute(plan_configs(runs, tmp_path), progress=False)
    assert [r["status"] for r in result.records] == ["diverged", "completed"]
    assert result.ok and result.exit_code == 0
    diverged = result.records[0]
    assert "training loss became" in diverged["message"]
    assert diverged["metrics"]["peak_memory_bytes"]["max"] > 0
    assert not checkpoint_path(tmp_path, diverged["run_id"]).exists()
    again = execute(plan_configs(runs, tmp_path), progress=False)
    assert again.records == [] and again.skipped == [r["run_id"] for r in result.records]


def test_failed_run_is_recorded_suite_goes_on_and_exits_nonzero(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    [cnn] = configs([{"task": "digits-cnn", "estimator": "bp", "max_steps": 2, "train_subset": 64}])
    cnn_record = run_one(cnn, tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "defaults: {max_steps: 2, train_subset: 64, accelerator: cpu}\n"
        f"runs:\n  - {{task: digits-mlp, estimator: bp, init_from: {cnn_record['run_id']}}}\n"
        "  - {task: digits-mlp, estimator: bp}\n")
    code = main(["run", str(suite), "--out", str(tmp_path), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED digits-mlp__bp__" in captured.err and "does not fit this model" in captured.err
    statuses = sorted(json.loads(p.read_text())["status"] for p in (tmp_path / "runs").glob("digits-mlp*.json"))
    assert statuses == ["completed", "failed"]


def test_init_from_fine_tunes_a_bp_checkpoint(tmp_path: Path) -> None:
    [bp] = configs([{"task": "digits-mlp", "estimator": "bp", "max_epochs": 2}])
    bp_record = run_one(bp, tmp_path)
    [tune] = configs([{"task": "digits-mlp", "estimator": "ulr", "optimizer": "sgd", "lr": 1e-12, "max_steps": 1,
                       "estimator_options": {"copies": 2}, "init_from": bp_record["run_id"]}])
    record = run_one(tune, tmp_path)
    assert record["status"] == "completed" and record["config"]["init_from"] == bp_record["run_id"]
    assert record["metrics"]["val_accuracy_final"] == pytest.approx(bp_record["metrics"]["val_accuracy_final"])


def test_max_steps_mid_epoch_still_evaluates_at_the_last_step(tmp_path: Path) -> None:
    [config] = configs([{"task": "digits-mlp", "estimator": "bp", "max_steps": 7, "max_epochs": None}])
    record = run_one(config, tmp_path)
    assert [row["step"] for row in record["metrics"]["history"]] == [7]


def test_kill_mid_suite_then_rerun_gives_every_run_exactly_once(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("defaults: {task: digits-mlp, estimator: bp, max_epochs: 4, train_subset: 600, accelerator: cpu}\n"
                     "grid: {lr: [0.001, 0.002, 0.003, 0.004]}\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lrbench", "run", str(suite), "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def in_flight() -> list[str]:
        """Runs that have started logging but have no record yet (after at least one finished run)."""
        done = {p.stem for p in (out / "runs").glob("*.json")}
        started = {p.name for p in (out / "logs").glob("*")} if (out / "logs").exists() else set()
        return sorted(started - done) if done else []

    deadline = time.time() + 240
    while time.time() < deadline and not in_flight() and proc.poll() is None:
        time.sleep(0.01)
    killed = in_flight()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, "the suite finished before it could be killed mid-run"
    assert not (out / "runs" / f"{killed[0]}.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert 1 <= len(before) < 4
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    files = sorted((out / "runs").iterdir())
    records = [json.loads(p.read_text()) for p in files]
    assert len(files) == 4 and all(p.suffix == ".json" for p in files)  # no temporary leftovers
    assert len({r["run_id"] for r in records}) == 4 and all(r["status"] == "completed" for r in records)
    assert sorted(r["config"]["lr"] for r in records) == [0.001, 0.002, 0.003, 0.004]
    for name, mtime in before.items():  # finished runs were skipped, not redone
        assert (out / "runs" / name).stat().st_mtime_ns == mtime
    for r in records:
        assert len(r["metrics"]["history"]) == 4
        rows = (out / "logs" / r["run_id"] / "metrics.csv").read_text().splitlines()
        assert sum(1 for row in rows[1:] if row.split(",")[rows[0].split(",").index("val_accuracy")]) == 4


def test_robustness_is_evaluated_when_configured(tmp_path: Path) -> None:
    pytest.importorskip("lrbench.suite.training.robustness_eval")
    settings = {"subset_size": 60, "pgd_linf": {"steps": 2}, "pgd_l2": {"steps": 2}, "severities": [1],
                "corruptions": ["gaussian_noise"]}
    [bp] = configs([{"task": "digits-mlp", "estimator": "bp", "max_epochs": 2, "robustness": settings}])
    [tuned] = configs([{"task": "digits-mlp", "estimator": "bp", "max_epochs": 1, "lr": 0.01,
                        "robustness": {**settings, "transfer_source": run_id(bp)}}])
    result = execute(plan_configs([bp, tuned], tmp_path), progress=False)
    assert [r["status"] for r in result.records] == ["completed", "completed"], result.records[-1]["message"]
    robustness = result.records[0]["metrics"]["robustness"]
    assert robustness["subset_size"] == 60 and robustness["clean"] > 0.7
    assert robustness["transfer_fgsm"] is None
    assert all(robustness["clean"] >= acc for acc in robustness["fgsm"].values())
    transfer = result.records[1]["metrics"]["robustness"]["transfer_fgsm"]
    assert transfer and all(0.0 <= acc <= 1.0 for acc in transfer.values())


@pytest.mark.slow
def test_quick_suite_lr_estimators_beat_chance_on_every_family(tmp_path: Path) -> None:
    """The built-in quick suite (minutes on 2 CPU cores): every run completes; ULR and ALR clear chance (0.1)."""
    runs = expand_suite("quick", {"accelerator": "cpu", "progress": False})
    result = execute(plan_configs(runs, tmp_path), progress=False)
    assert result.ok and len(result.records) == 16
    assert all(r["status"] == "completed" for r in result.records)
    for r in result.records:
        accuracy = r["metrics"]["test_accuracy_final"]
        if r["config"]["estimator"] in ("ulr", "alr"):
            assert accuracy > 0.15, r["run_id"]
        else:
            assert accuracy > 0.8, r["run_id"]
