"""Compute budgets: validation, a run stopped by its budget, cumulative cost, equal-compute suites."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lrbench.suite.cli.suite_files import expand_suite, resolve_config
from lrbench.suite.errors import UserError
from lrbench.suite.training.runner import run_one

BASE = {"task": "digits-mlp", "estimator": "bp", "accelerator": "cpu", "grad_quality_every": None}


@pytest.mark.parametrize(("budget", "message"), [
    ({"unit": "steps", "amount": 3}, "budget.unit must be one of forward_passes, flops, cpu_seconds, wall_seconds"),
    ({"unit": "flops"}, "exactly one of 'amount'"),
    ({"unit": "flops", "amount": 5, "same_as": "ulr"}, "got both"),
    ({"unit": "forward_passes", "amount": -1}, "budget.amount must be a positive number"),
    ({"unit": "wall_seconds", "same_as": "ulr"}, "needs a unit known before training"),
    ({"unit": "flops", "amount": 1e9, "extra": 1}, "unknown budget key 'extra'"),
    ("lots", "'budget' must be a mapping"),
    ({"unit": "wall_seconds", "amount": 5, "devices": 2}, "needs devices=1"),
])
def test_bad_budget_is_one_line(budget: object, message: str) -> None:
    devices = budget.pop("devices", 1) if isinstance(budget, dict) else 1
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_config({**BASE, "devices": devices, "budget": budget})


def test_time_budget_with_a_schedule_needs_a_length() -> None:
    with pytest.raises(UserError, match="lr_schedule 'cosine' needs max_epochs or max_steps"):
        resolve_config({**BASE, "max_epochs": None, "lr_schedule": "cosine",
                        "budget": {"unit": "cpu_seconds", "amount": 2}})
    assert resolve_config({**BASE, "max_epochs": None, "budget": {"unit": "flops", "amount": 1e9}})["budget"] == {
        "unit": "flops", "amount": 1e9}


def test_forward_pass_budget_stops_exactly_and_cost_is_cumulative(tmp_path: Path) -> None:
    """BP declares 1 forward pass per step: a budget of 100 forward passes is exactly 100 steps, with no
    epoch limit; every history row carries the cost so far, the target the cost when it was reached."""
    config = resolve_config({**BASE, "max_epochs": None, "budget": {"unit": "forward_passes", "amount": 100}})
    record = run_one(config, tmp_path)
    metrics = record["metrics"]
    assert record["status"] == "completed"
    assert metrics["history"][-1]["step"] == 100
    assert metrics["budget"] == {"unit": "forward_passes", "amount": 100.0, "spent": 100.0, "exhausted": True}
    flops = metrics["throughput"]["flops_per_step"]
    assert flops > 0
    assert metrics["cost"]["forward_passes"] == 100.0
    assert metrics["cost"]["flops"] == pytest.approx(100 * flops)
    assert 0 < metrics["cost"]["cpu_seconds"] and metrics["cost"]["wall_seconds"] == pytest.approx(
        metrics["history"][-1]["wall_time"])
    previous = 0.0
    for row in metrics["history"]:
        assert row["forward_passes"] == row["step"] and row["flops"] == pytest.approx(row["step"] * flops)
        assert row["cpu_seconds"] > previous
        previous = row["cpu_seconds"]
    ttt = metrics["time_to_target"]
    assert ttt["steps"] is not None, "BP reaches 0.9 on digits-mlp within 100 steps"
    hit = next(r for r in metrics["history"] if r["step"] == ttt["steps"])
    assert (ttt["forward_passes"], ttt["flops"], ttt["cpu_seconds"], ttt["seconds"]) == (
        hit["forward_passes"], hit["flops"], hit["cpu_seconds"], hit["wall_time"])
    for snapshot in (record["load"]["start"], record["load"]["end"]):
        assert len(snapshot["load_average"]) == 3 and snapshot["cpu_count"] >= 1
    assert record["estimator_defaults"] == {}


def test_wall_budget_ends_training_before_the_epochs(tmp_path: Path) -> None:
    config = resolve_config({**BASE, "max_epochs": 3, "budget": {"unit": "wall_seconds", "amount": 0.02}})
    metrics = run_one(config, tmp_path)["metrics"]
    assert metrics["budget"]["exhausted"] and metrics["cost"]["wall_seconds"] >= 0.02
    assert metrics["history"][-1]["step"] < 3 * 40  # 40 batches of 32 per epoch


def test_suite_extends_and_grid_lists() -> None:
    configs = expand_suite({"extends": "smoke", "grid": [{"task": "digits-mlp", "estimator": "bp"},
                                                         {"task": "digits-cnn", "estimator": ["bp", "ulr"]}]})
    assert [(c["task"], c["estimator"]) for c in configs] == [("digits-mlp", "bp"), ("digits-cnn", "bp"),
                                                              ("digits-cnn", "ulr")]
    assert all(c["max_steps"] == 3 and c["train_subset"] == 96 for c in configs)  # smoke's defaults


def test_same_as_gives_every_estimator_the_reference_cost(tmp_path: Path) -> None:
    """The budget of ``same_as: ulr`` is ULR's forward passes over its own 6 steps; ULR then runs exactly
    those 6 steps and BP (1 forward pass per step) ⌈budget⌉ steps; the epoch/step limits are cleared."""
    suite = {"defaults": {"max_steps": 6, "max_epochs": None, "train_subset": 128, "grad_quality_every": None,
                          "accelerator": "cpu", "budget": {"unit": "forward_passes", "same_as": "ulr"}},
             "grid": {"task": "digits-mlp", "estimator": ["bp", "ulr"]},
             "estimators": {"ulr": {"estimator_options": {"copies": 4}}}}
    bp, ulr = expand_suite(suite)
    amount = ulr["budget"]["amount"]
    assert bp["budget"] == ulr["budget"] == {"unit": "forward_passes", "amount": amount, "reference": "ulr"}
    assert bp["max_steps"] is None and bp["max_epochs"] is None
    ulr_record, bp_record = run_one(ulr, tmp_path), run_one(bp, tmp_path)
    per_step = ulr_record["metrics"]["cost"]["forward_passes"] / 6
    assert ulr_record["metrics"]["history"][-1]["step"] == 6
    assert amount == pytest.approx(6 * per_step) and per_step > 5  # 1 clean + 4 noisy passes (layer-weighted)
    assert bp_record["metrics"]["history"][-1]["step"] == math.ceil(amount - 1e-6)
    assert bp_record["metrics"]["cost"]["forward_passes"] >= amount


def test_run_ends_with_the_result_table_and_the_report_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lrbench.suite.cli.main import main

    suite = tmp_path / "two.yaml"
    suite.write_text("defaults: {max_steps: 3, max_epochs: null, train_subset: 96, grad_quality_every: null}\n"
                     "grid: {task: digits-mlp, estimator: [bp, ulr]}\n")
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("task "))
    assert lines[header].split() == ["task", "bp", "ulr"]
    row = lines[header + 2].split()
    assert row[0] == "digits-mlp" and row[2] == "(BP)" and 0 <= float(row[1]) <= 1 and 0 <= float(row[3]) <= 1
    assert lines[-1] == f"next: lrbench report {out}"
