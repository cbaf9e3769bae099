"""The public Python API (lrbench.api, re-exported lazily from lrbench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lrbench
from lrbench.suite.errors import UserError

TINY = {"defaults": {"max_steps": 2, "max_epochs": None, "train_subset": 64, "accelerator": "cpu",
                     "grad_quality_every": None},
        "grid": {"task": ["digits-mlp"], "estimator": ["bp", "ulr"]}}


def test_import_lrbench_is_cheap() -> None:
    code = "import sys, lrbench; print('torch' in sys.modules, 'pandas' in sys.modules, callable(lrbench.run_suite))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False", "True"], done.stderr


def test_run_suite_returns_records_and_resumes(tmp_path: Path) -> None:
    records = lrbench.run_suite(TINY, out=tmp_path)
    assert [r["config"]["estimator"] for r in records] == ["bp", "ulr"]
    assert all(r["status"] == "completed" for r in records)
    again = lrbench.run_suite(TINY, out=tmp_path)          # nothing runs: the same records read back
    assert [r["started_at"] for r in again] == [r["started_at"] for r in records]
    frame = lrbench.results_frame(tmp_path)
    assert {"run_id", "task", "estimator", "metric", "value"} <= set(frame.columns)
    accuracies = frame[frame["metric"] == "test_accuracy_final"]
    assert sorted(accuracies["estimator"]) == ["bp", "ulr"] and accuracies["value"].between(0, 1).all()
    assert lrbench.load_results(tmp_path).runs.shape[0] == 2
    assert lrbench.build_report(tmp_path).name == "index.html"


def test_run_config_is_one_record_and_refuses_seeds(tmp_path: Path) -> None:
    record = lrbench.run_config({"task": "digits-mlp", "estimator": "bp", "max_steps": 1, "max_epochs": None,
                                 "train_subset": 32, "accelerator": "cpu", "seed": 3}, out=tmp_path)
    assert record["seed"] == 3 and record["status"] == "completed"
    with pytest.raises(UserError, match="run_config runs one seed"):
        lrbench.run_config({"task": "digits-mlp", "seeds": [0, 1]}, out=tmp_path)


def test_models_data_and_estimators() -> None:
    state = torch.random.get_rng_state()
    a, b = lrbench.build_model("digits-mlp", seed=1), lrbench.build_model("digits-mlp", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)      # the global stream is untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert lrbench.build_model("digits-mlp", widths=(8,))[1][0].out_features == 8
    x, y = lrbench.load_data("digits-mlp").train
    est = lrbench.get_estimator("ulr", copies=4)
    loss, logs = est.estimate(a, lrbench.get_task("digits-mlp").loss_fn, x[:16], y[:16])
    assert loss.ndim == 0 and logs["forward_passes"] > 1 and a[-1].weight.grad is not None
    sources = {e["name"]: e["source"] for e in lrbench.list_estimators()}
    assert sources["ulr"] == "built-in" and lrbench.origin("task", "digits-mlp") == "built-in"


def test_check_estimator_through_the_api() -> None:
    report = lrbench.check_estimator("bp", families=["mlp"], n=1)
    assert report.passed and report.to_json()["rows"][0]["check"] == "refusal"
