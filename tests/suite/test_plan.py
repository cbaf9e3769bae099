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


# The quick suite's run ids as recorded before this round (commit f0caea6): a results folder written then
# must still be recognised (runs skipped, not re-run under new ids) after options are added to estimators.
QUICK_RUN_IDS_F0CAEA6 = {
    "digits-cnn__alr__672b2eb61b__s0", "digits-cnn__bp__87b40552e7__s0", "digits-cnn__ulr__d6fa3a736a__s0",
    "digits-cnn__xconv__4b1a8d81f8__s0", "digits-mlp__alr__9db85780e1__s0", "digits-mlp__bp__3f79cff7ef__s0",
    "digits-mlp__ulr__bbe5f4f785__s0", "digits-mlp__xconv__d077c4373c__s0", "digits-rnn__alr__e95db8b588__s0",
    "digits-rnn__bp__57306fb3d3__s0", "digits-rnn__ulr__963ea63bb2__s0", "digits-rnn__xconv__65b0a6763d__s0",
    "digits-vit__alr__6f06e50712__s0", "digits-vit__bp__90cf96baa0__s0", "digits-vit__ulr__e990ff5ea5__s0",
    "digits-vit__xconv__80cac31136__s0"}


def test_quick_suite_run_ids_survive_added_estimator_options() -> None:
    """``batch_norm`` (issue 13) is declared ``added``: at its default it is not stored, so not hashed."""
    from lrbench.schema import run_id
    from lrbench.suite.cli.suite_files import expand_suite

    configs = expand_suite("quick")
    assert {run_id(c) for c in configs} == QUICK_RUN_IDS_F0CAEA6
    ulr = next(c for c in configs if c["estimator"] == "ulr")
    assert "batch_norm" not in ulr["estimator_options"]
    coupled = expand_suite("quick", {"estimator_options.batch_norm": "coupled"}, ["estimator=ulr"])
    assert all(c["estimator_options"]["batch_norm"] == "coupled" for c in coupled)
    assert not {run_id(c) for c in coupled} & QUICK_RUN_IDS_F0CAEA6
