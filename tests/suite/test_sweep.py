"""Sweeps (suite/cli/sweep_file.py, lrbench sweep): the shipped study files, offline grid/random through the runner
into one results folder, malformed files as one clear line with nothing written, and the online path's
wiring (wandb.sweep + wandb.agent, faked: no network here)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from lrbench.suite.cli import sweep_agent as SA
from lrbench.suite.cli import sweep_file as S
from lrbench.suite.cli import sweep_points as SP
from lrbench.suite.cli.main import main
from lrbench.suite.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "suite" / "sweeps"
TINY = ["max_steps=2", "max_epochs=1", "train_subset=512", "grad_quality_every=1", "accelerator=cpu"]


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


# --------------------------------------------------------------------------- the shipped studies
@pytest.mark.parametrize("name, method, trials", [
    ("ulr_copies_sigma_baseline", "grid", 27), ("alr_vs_ulr_copies", "grid", 16),
    ("xconv_probes_batch", "grid", 6), ("ulr_sigma_lr_random", "random", 12)])
def test_shipped_sweeps_expand(name: str, method: str, trials: int) -> None:
    sweep = S.load_sweep(SWEEPS / f"{name}.yaml")
    assert sweep.method == method and sweep.metric == {"name": "val_accuracy_best", "goal": "maximize"}
    assert sweep.raw["command"][:5] == ["${env}", "${program}", "sweep", name, "--trial"]
    configs = SP.offline_configs(sweep)
    assert len(configs) == trials and len({c["estimator"] + str(c["estimator_options"]) + str(c["seed"])
                                           + str(c["batch_size"]) + str(c["lr"]) for c in configs}) == trials


def test_grid_is_the_cartesian_product_of_values() -> None:
    configs = SP.offline_configs(S.load_sweep("ulr_copies_sigma_baseline"))  # a bare name finds the file
    combos = {(c["estimator_options"]["copies"], c["estimator_options"]["sigma"], c["estimator_options"]["baseline"])
              for c in configs}
    assert combos == {(k, s, b) for k in (8, 32, 128) for s in (0.003, 0.01, 0.03) for b in ("none", "clean", "loo")}
    assert all(c["task"] == "digits-mlp" and c["estimator_options"]["injection"] == "layerwise" for c in configs)


def test_random_is_seeded_bounded_and_capped() -> None:
    sweep = S.load_sweep(SWEEPS / "ulr_sigma_lr_random.yaml")
    first, again, other = SP.offline_points(sweep, 0), SP.offline_points(sweep, 0), SP.offline_points(sweep, 1)
    assert first == again and first != other and len(first) == 12
    sigmas = [p["estimator_options.sigma"] for p in first]
    assert all(1e-3 <= s <= 1e-1 for s in sigmas) and all(3e-4 <= p["lr"] <= 3e-2 for p in first)
    assert {p["estimator_options.copies"] for p in first} <= {16, 32, 64}
    # log-uniform: log σ is spread over [log 1e-3, log 1e-1] (mean of 1000 draws near the middle, log 1e-2)
    many = S.parse_sweep({"method": "random", "run_cap": 1000, "parameters": {
        "estimator_options.sigma": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.1}}})
    logs = [math.log10(p["estimator_options.sigma"]) for p in SP.offline_points(many, 3)]
    assert abs(sum(logs) / len(logs) + 2.0) < 0.1 and min(logs) >= -3 and max(logs) <= -1


def test_sampling_distributions() -> None:
    import random

    rng = random.Random(0)
    spec = S._normalise("t", "p", {"min": 2, "max": 5})
    assert spec["distribution"] == "int_uniform" and {SP.sample_value(spec, rng) for _ in range(200)} == {2, 3, 4, 5}
    spec = S._normalise("t", "p", {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25})
    assert {SP.sample_value(spec, rng) for _ in range(200)} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    spec = S._normalise("t", "p", {"values": ["a", "b"], "probabilities": [1.0, 0.0]})
    assert {SP.sample_value(spec, rng) for _ in range(50)} == {"a"}
    spec = S._normalise("t", "p", {"mu": 1.0, "sigma": 0.0})
    assert spec["distribution"] == "normal" and SP.sample_value(spec, rng) == 1.0


# --------------------------------------------------------------------------- offline runs
def test_offline_grid_runs_every_trial_into_one_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "study"
    code = main(["sweep", str(SWEEPS / "xconv_probes_batch.yaml"), "--offline", "--out", str(out),
                 "--no-progress", *TINY])
    assert code == 0
    records = _records(out)
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)
    pairs = {(r["config"]["estimator_options"]["probes"], r["config"]["batch_size"]) for r in records}
    assert pairs == {(p, b) for p in (4, 16, 64) for b in (32, 128)}
    for r in records:
        assert r["config"]["max_steps"] == 2 and r["metrics"]["history"][-1]["step"] == 2  # the override won
        assert 0.0 <= r["metrics"]["val_accuracy_final"] <= 1.0
        assert -1.0 <= r["metrics"]["gradient_quality"]["mean_cosine"] <= 1.0
    assert "6 trials: 6 run now, 0 already done, 0 failed" in capsys.readouterr().out
    # run again: every trial is already recorded
    assert main(["sweep", "xconv_probes_batch", "--offline", "--out", str(out), "--no-progress", *TINY]) == 0
    assert "6 trials: 0 run now, 6 already done" in capsys.readouterr().out
    assert len(_records(out)) == 6


def test_offline_random_with_seed_lists_reproducible_trials(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["sweep", "ulr_sigma_lr_random", "--offline", "--out", str(tmp_path), "--list", *TINY]
    assert main([*args, "--seed", "5"]) == 0
    first = capsys.readouterr().out
    assert main([*args, "--seed", "5"]) == 0 and capsys.readouterr().out == first
    assert main([*args, "--seed", "6"]) == 0 and capsys.readouterr().out != first
    assert len(first.splitlines()) == 12 and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- malformed files
MALFORMED = [
    ("method: grid\nparameters: {task: {value: digits-mlp}\n", "malformed YAML at line 3, column 1"),
    ("parameters: {task: {value: digits-mlp}}\n", "missing 'method' (one of grid, random, bayes)"),
    ("method: hyperband\nparameters: {task: {value: digits-mlp}}\n",
     "unknown method 'hyperband'; valid methods: grid, random, bayes"),
    ("method: grid\n", "missing 'parameters'"),
    ("method: grid\nparameters: {task: {value: digits-mlp}, lr: {}}\n", "parameter 'lr' has no values or distribution"),
    ("method: grid\nparameters: {task: {value: digits-mlp}, lr: {values: []}}\n",
     "parameter 'lr': 'values' must be a non-empty list"),
    ("method: grid\nparameters: {task: {value: digits-mlp}, lr: {distribution: zipf, min: 1, max: 2}}\n",
     "parameter 'lr': unknown distribution 'zipf'"),
    ("method: grid\nparameters: {task: {value: digits-mlp}, lr: {min: 0.001, max: 0.1}}\n",
     "grid sweeps need value/values (or int_uniform) for every parameter; 'lr' has distribution 'uniform'"),
    ("method: grid\nparameters: {task: {value: digits-mlp}, learning_rate: {values: [0.1]}}\n",
     "parameter 'learning_rate' is not a config key; valid keys:"),
    ("method: grid\nmetrics: {name: x}\nparameters: {task: {value: digits-mlp}}\n", "unknown key 'metrics'"),
    ("method: random\nparameters: {task: {value: digits-mlp}}\n", "method 'random' offline needs 'run_cap'"),
    ("method: grid\nparameters: {task: {value: digits-mlp}, estimator: {value: ulr}, "
     "estimator_options.copies: {values: [4, 0]}}\n", "option 'copies' must be >= 1, got 0"),
    ("- method: grid\n", "must be a YAML mapping with method and parameters, got list"),
]


@pytest.mark.parametrize("text, message", MALFORMED)
def test_malformed_sweep_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture, text: str,
                                            message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    code = main(["sweep", str(path), "--offline", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"lrbench: error: sweep {path}: ")
    assert message in err
    assert not out.exists()  # nothing written


def test_bayes_offline_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["sweep", "bp_lr_batch_bayes", "--offline", "--out", str(tmp_path / "o")]) == 2
    assert "method 'bayes' needs the wandb sweep controller (online)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_sweep_file_lists_the_shipped_ones(capsys: pytest.CaptureFixture) -> None:
    assert main(["sweep", "nope", "--offline"]) == 2
    assert "no sweep file 'nope'; built-in sweeps: alr_vs_ulr_copies, bp_lr_batch_bayes" in capsys.readouterr().err


# --------------------------------------------------------------------------- online (wandb faked)
def test_online_without_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert main(["sweep", "xconv_probes_batch", "--out", str(tmp_path / "o")]) == 2
    assert "an online sweep needs a W&B API key" in capsys.readouterr().err
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(UserError, match="WANDB_MODE=disabled; use --offline"):
        SA.run_online(S.load_sweep("xconv_probes_batch"), tmp_path / "o")


def test_online_checks_a_point_before_creating_the_sweep(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """bayes/random sweeps need no run_cap online, but a bad parameter value fails before wandb.sweep."""
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(wandb, "sweep", lambda **kw: pytest.fail("the sweep must not be created"))
    bad = S.parse_sweep({"method": "bayes", "parameters": {
        "task": {"value": "digits-mlp"}, "estimator": {"value": "ulr"},
        "estimator_options.sigma": {"distribution": "uniform", "min": -2.0, "max": -1.0}}}, "bad.yaml")
    with pytest.raises(UserError, match="sweep bad.yaml: option 'sigma' must be > 0"):
        SA.run_online(bad, tmp_path / "o")


def test_online_creates_the_sweep_and_runs_agent_trials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """wandb.sweep / wandb.agent replaced by fakes that behave like the agent: it starts each trial's run
    with the sampled parameters as its (nested) config and calls our function."""
    import wandb

    from lrbench.suite.training import tracking

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    sweep_file = tmp_path / "study.yaml"
    sweep_file.write_text(textwrap.dedent("""\
        name: tiny
        method: grid
        metric: {name: val_accuracy_best, goal: maximize}
        parameters:
          task: {value: digits-mlp}
          estimator: {value: ulr}
          estimator_options:
            parameters:
              copies: {values: [2, 4]}
        """))
    created: dict = {}
    runs: list = []

    def fake_sweep(sweep: dict, project: str | None = None, entity: str | None = None) -> str:
        created.update(sweep=sweep, project=project)
        return "sw123"

    def fake_agent(sweep_id: str, function=None, project=None, entity=None, count=None) -> None:
        for copies in (2, 4)[:count]:
            run = wandb.init(mode="offline", dir=str(tmp_path), project=project,
                             config={"task": "digits-mlp", "estimator": "ulr", "estimator_options": {"copies": copies}})
            function()
            runs.append(Path(run.dir).parent)
            wandb.finish()

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(wandb, "agent", fake_agent)
    out = tmp_path / "results"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--no-progress", *TINY]) == 0
    assert created["sweep"]["method"] == "grid" and created["project"] == "lrbench"
    records = _records(out)
    assert sorted(r["config"]["estimator_options"]["copies"] for r in records) == [2, 4]
    assert all(r["config"]["max_steps"] == 2 for r in records)  # command-line overrides reach the trials
    for run_dir, copies in zip(runs, (2, 4), strict=True):
        summary = tracking.read_offline_run(run_dir)["summary"]
        record = next(r for r in records if r["config"]["estimator_options"]["copies"] == copies)
        assert summary["val_accuracy_best"] == pytest.approx(record["metrics"]["val_accuracy_best"])  # the metric
        assert summary["run_id"] == record["run_id"]


TINY_SWEEP = textwrap.dedent("""\
    name: tiny
    method: grid
    metric: {name: val_accuracy_best, goal: maximize}
    parameters:
      task: {value: digits-mlp}
      estimator: {value: ulr}
      estimator_options:
        parameters:
          copies: {values: [2, 4]}
    """)


def test_offline_sweep_with_wandb_tracks_every_trial(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lrbench.suite.training import tracking

    monkeypatch.delenv("WANDB_MODE", raising=False)
    (tmp_path / "tiny.yaml").write_text(TINY_SWEEP)
    out = tmp_path / "results"
    assert main(["sweep", str(tmp_path / "tiny.yaml"), "--offline", "--wandb", "--out", str(out), "--no-progress",
                 *TINY]) == 0
    records = {r["run_id"]: r for r in _records(out)}
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(records) == 2 and len(runs) == 2
    for run_dir in runs:
        summary = tracking.read_offline_run(run_dir)["summary"]
        assert summary["val_accuracy_best"] == pytest.approx(records[summary["run_id"]]["metrics"]["val_accuracy_best"])


def test_trial_mode_runs_one_point_from_the_agent_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What `wandb agent` runs through the file's command: lrbench sweep FILE --trial key=value ..."""
    from lrbench.suite.training import tracking

    monkeypatch.setenv("WANDB_MODE", "offline")  # the agent's run, here without a server
    (tmp_path / "tiny.yaml").write_text(TINY_SWEEP)
    out = tmp_path / "results"
    assert main(["sweep", str(tmp_path / "tiny.yaml"), "--trial", "--out", str(out), "task=digits-mlp",
                 "estimator=ulr", "estimator_options={'copies': 4}", *TINY]) == 0
    [record] = _records(out)
    assert record["config"]["estimator_options"]["copies"] == 4 and record["config"]["max_steps"] == 2
    [run_dir] = sorted((out / "wandb").glob("offline-run-*"))
    assert tracking.read_offline_run(run_dir)["summary"]["run_id"] == record["run_id"]
