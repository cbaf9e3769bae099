"""The plan step (suite/cli/plan.py, preflight.py): anything invalid is refused before any file is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrbench.suite.cli.main import main
from lrbench.suite.cli.plan import plan_suite
from lrbench.suite.errors import UserError


def _refused(capsys: pytest.CaptureFixture[str], out: Path, *argv: str) -> str:
    code = main([*argv, "--out", str(out)] if argv[0] == "run" else list(argv))
    stdout, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and stdout == "", (code, stdout, err)
    assert len(lines) == 1 and lines[0].startswith("lrbench: error:"), err
    return lines[0]


def test_unknown_strategy_is_refused_at_plan_time_with_nothing_written(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Before: the 16 runs of the quick suite each failed in Lightning, writing 32 files."""
    out = tmp_path / "results"
    line = _refused(capsys, out, "run", "quick", "--strategy", "nosuch", "--no-progress")
    assert "unknown strategy 'nosuch'" in line and "ddp_copies" in line
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_paper_runs_the_same_preflight(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`lrbench paper` used to skip the preflight checks: a bad strategy now stops it before any run."""
    out = tmp_path / "paper"
    line = _refused(capsys, out, "paper", "alr-copies", "--out", str(out), "strategy=nosuch", "--no-progress")
    assert "unknown strategy 'nosuch'" in line
    assert not out.exists()


def test_yaml_out_key_is_refused_with_a_pointer_to_the_flag(tmp_path: Path) -> None:
    """``out:`` in a suite file used to be accepted and silently ignored."""
    suite = {"defaults": {"out": str(tmp_path / "elsewhere"), "max_steps": 1}, "runs": [{"task": "digits-mlp"}]}
    with pytest.raises(UserError, match=r"'out' is not a config key in 'defaults': .*--out DIR"):
        plan_suite(suite, out_dir=tmp_path / "results")
    assert list(tmp_path.iterdir()) == []


def test_plan_holds_typed_configs_with_todays_run_ids(tmp_path: Path) -> None:
    plan = plan_suite("quick", ["max_steps=1"], ["task=digits-mlp", "estimator=bp"], out_dir=tmp_path)
    [config] = plan.configs
    assert config.estimator == "bp" and config["max_steps"] == 1 and config.run_id == plan.run_ids[0]
    assert config.run_id.startswith("digits-mlp__bp__") and config.run_id.endswith("__s0")
    assert list(tmp_path.iterdir()) == []


def test_offline_sweep_runs_the_same_preflight(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    line = _refused(capsys, out, "sweep", "ulr_copies_sigma_baseline", "--offline", "--out", str(out),
                    "strategy=nosuch", "--no-progress")
    assert "unknown strategy 'nosuch'" in line
    assert not out.exists()
