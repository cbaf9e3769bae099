"""``lrbench run ... --devices 2 --strategy ddp`` end to end on 2 CPU processes (Lightning DDP, gloo).

Slow (each run starts a second Python process and a gloo group: ~1 min on a loaded 2-core machine);
the fast gloo tests of the sync itself are in test_distributed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrbench.suite.training import tracking
from lrbench.suite.training.results_store import checkpoint_path

REPO = Path(__file__).resolve().parents[2]
BUDGET = ["max_steps=12", "max_epochs=1", "accelerator=cpu", "grad_quality_every=4"]


def _lrbench(out: Path, *args: str, wandb_mode: str = "disabled") -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": wandb_mode}
    proc = subprocess.run([sys.executable, "-m", "lrbench", "run", "quick", "--out", str(out), "--no-progress",
                           *args, *BUDGET], cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("lrbench run: 1 runs") == 1  # one summary line, from rank 0
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


@pytest.mark.slow
@pytest.mark.ddp
def test_ulr_on_two_cpu_processes(tmp_path: Path) -> None:
    [record] = _lrbench(tmp_path, "--only", "task=digits-mlp", "--only", "estimator=ulr",
                        "--devices", "2", "--strategy", "ddp", "--wandb", wandb_mode="offline")
    assert record["status"] == "completed", record["message"]
    assert record["hardware"]["world_size"] == 2 and record["hardware"]["replicas_identical"] is True
    m = record["metrics"]
    assert len(m["peak_memory_bytes"]["per_device"]) == 2 and m["peak_memory_bytes"]["max"] > 0
    assert m["throughput"]["samples_per_second"] > 0 and m["val_accuracy_final"] > 0.3  # chance is 0.1
    # gradient quality compares the synced estimate with BP on the same global batch
    assert 0.05 < m["gradient_quality"]["mean_cosine"] <= 1.0
    # only rank 0 tracks: one wandb run, with the job's numbers in its summary
    [run_dir] = sorted((tmp_path / "wandb").glob("offline-run-*"))
    summary = tracking.read_offline_run(run_dir)["summary"]
    assert summary["world_size"] == 2 and summary["val_accuracy_final"] == pytest.approx(m["val_accuracy_final"])


@pytest.mark.slow
@pytest.mark.ddp
def test_bp_two_processes_match_one_process(tmp_path: Path) -> None:
    """Same global batch (batch_size is global: each rank takes half) -> the same weights up to float32
    summation order."""
    only = ["--only", "task=digits-mlp", "--only", "estimator=bp"]
    [two] = _lrbench(tmp_path / "two", *only, "--devices", "2", "--strategy", "ddp")
    [one] = _lrbench(tmp_path / "one", *only)
    assert two["hardware"]["world_size"] == 2 and one["hardware"]["world_size"] == 1
    w2 = torch.load(checkpoint_path(tmp_path / "two", two["run_id"]), weights_only=True)
    w1 = torch.load(checkpoint_path(tmp_path / "one", one["run_id"]), weights_only=True)
    diff = max(float((w2[k] - w1[k]).abs().max()) for k in w1)
    assert diff < 1e-4, diff
    assert two["metrics"]["train_loss_final"] == pytest.approx(one["metrics"]["train_loss_final"], rel=1e-4)
    assert two["metrics"]["val_accuracy_final"] == pytest.approx(one["metrics"]["val_accuracy_final"], abs=0.01)


@pytest.mark.slow
@pytest.mark.ddp
def test_copy_parallel_ulr_on_two_cpu_processes(tmp_path: Path) -> None:
    """--strategy ddp_copies: every rank the whole batch with half of the copies."""
    [record] = _lrbench(tmp_path, "--only", "task=digits-mlp", "--only", "estimator=ulr",
                        "--devices", "2", "--strategy", "ddp_copies")
    assert record["status"] == "completed", record["message"]
    assert record["config"]["strategy"] == "ddp_copies" and record["hardware"]["world_size"] == 2
    assert record["hardware"]["replicas_identical"] is True and record["metrics"]["val_accuracy_final"] > 0.3
