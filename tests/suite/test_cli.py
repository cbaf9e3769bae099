"""The lrbench CLI: list, gradcheck, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lrbench.estimators import list_estimators
from lrbench.suite.cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_gradcheck_bp_is_exact(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "gradcheck", "--task", "digits-mlp", "--estimator", "bp", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["relative_error"] == pytest.approx(0.0, abs=1e-6)
    assert result["norm_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert set(result["per_parameter"]) == {"1.0.weight", "1.0.bias", "2.weight", "2.bias"}


def test_gradcheck_repeats_report_variance(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "gradcheck", "--estimator", "ulr", "--copies", "64", "--baseline", "clean",
                           "--injection", "layerwise", "--prefix-sharing", "--repeats", "3", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["variance"] > 0
    # averaging three estimates points closer to the BP gradient than one estimate does on average
    assert result["cosine_of_mean"] > result["cosine"] > 0.5


@pytest.mark.parametrize("task", ["digits-mlp", "digits-cnn"])
@pytest.mark.parametrize("estimator", [e["name"] for e in list_estimators()])
def test_gradcheck_every_estimator(capsys: pytest.CaptureFixture[str], task: str, estimator: str) -> None:
    code, out, err = run_cli(capsys, "gradcheck", "--task", task, "--estimator", estimator,
                             "--batch-size", "16", "--json")
    assert code == 0, err
    result = json.loads(out)
    # every estimator is at least an ascent-correlated direction on one batch with its defaults
    assert -1.0 <= result["cosine"] <= 1.0 + 1e-9
    assert result["norm_ratio"] > 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["gradcheck", "--estimator", "ulr", "--copies", "0"], "copies"),
        (["gradcheck", "--estimator", "ulr", "--sigma", "0"], "sigma"),
        (["gradcheck", "--estimator", "nope"], "valid estimators: "),
        (["gradcheck", "--task", "nope"], "valid tasks: "),
        (["gradcheck", "--estimator", "bp", "--copies", "3"], "valid options: seed"),
        (["gradcheck", "--estimator", "ulr", "--injection", "sideways"], "global, layerwise"),
        (["gradcheck", "--estimator", "ulr", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrbench: error:"), err
    assert needle in lines[0]


def test_list_estimators_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "estimators", "--json")
    assert code == 0
    items = {item["name"]: item for item in json.loads(out)}
    assert {"bp", "ulr", "alr", "xconv", "es", "spsa", "fg"} <= set(items)
    assert items["ulr"]["options"]["copies"]["default"] >= 1
    assert "gaussian" in items["ulr"]["options"]["noise"]["choices"]
    assert all(item["description"] for item in items.values())


def test_list_tasks_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "tasks", "--json")
    assert code == 0
    tasks = {t["name"]: t for t in json.loads(out)}
    assert tasks["digits-mlp"]["num_parameters"] == 64 * 64 + 64 + 64 * 10 + 10
    assert {"digits-mlp", "digits-cnn", "digits-rnn", "digits-vit", "shakespeare-rnn"} <= set(tasks)


def test_module_entry_point_and_usage_error() -> None:
    """`python -m lrbench` works like `lrbench`; argparse errors are one line with exit code 2."""
    proc = subprocess.run([sys.executable, "-m", "lrbench", "list", "nothing"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "invalid choice" in proc.stderr


def test_run_without_out_writes_under_results(capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch) -> None:
    """`lrbench run quick` with no --out writes ./results/runs/<run_id>.json (the README's main command)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", "quick", "--only", "task=digits-mlp", "--only", "estimator=bp",
                           "max_epochs=1", "max_steps=3", "--no-progress")
    assert code == 0, err
    records = list((tmp_path / "results" / "runs").glob("*.json"))
    assert len(records) == 1
    assert json.loads(records[0].read_text())["status"] == "completed"
    assert not (tmp_path / "None").exists()
