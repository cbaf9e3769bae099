"""Suite expansion, overrides, --only, run ids, and bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrbench.schema import RESULT_KEYS, run_id
from lrbench.suite.cli.main import main
from lrbench.suite.cli.suite_files import expand_suite
from lrbench.suite.errors import UserError

SMALL = {"grid": {"task": ["digits-mlp", "digits-cnn"], "estimator": ["bp", "ulr"]},
         "estimators": {"ulr": {"estimator_options": {"copies": 8}}},
         "defaults": {"max_epochs": 1, "accelerator": "cpu"}, "seeds": [0]}


def test_quick_suite_covers_four_families_times_four_estimators() -> None:
    configs = expand_suite("quick", ["accelerator=cpu"])
    pairs = {(c["task"], c["estimator"]) for c in configs}
    assert pairs == {(t, e) for t in ("digits-mlp", "digits-cnn", "digits-rnn", "digits-vit")
                     for e in ("bp", "ulr", "alr", "xconv")}
    ulr = [c for c in configs if c["estimator"] == "ulr"]
    assert all(c["estimator_options"]["injection"] == "layerwise" for c in ulr)
    assert all(c["estimator_options"]["baseline"] != "none" for c in ulr)
    assert all(set(c) >= set(RESULT_KEYS) for c in configs)


def test_task_spec_defaults_then_suite_then_overrides() -> None:
    from lrbench.tasks import get_task

    spec = get_task("digits-mlp")
    [config] = expand_suite({"runs": [{"task": "digits-mlp"}]}, ["accelerator=cpu"])
    assert config["batch_size"] == spec.batch_size and config["lr"] == spec.lr
    assert config["max_epochs"] == int(spec.budget["max_epochs"])
    [config] = expand_suite({"defaults": {"lr": 0.01}, "runs": [{"task": "digits-mlp", "batch_size": 16}]},
                            {"max_epochs": 2, "accelerator": "cpu"})
    assert (config["lr"], config["batch_size"], config["max_epochs"]) == (0.01, 16, 2)


def test_overrides_seeds_and_estimator_options_reach_only_declaring_estimators() -> None:
    configs = expand_suite(SMALL, ["seeds=[0,1,2]", "estimator_options.copies=4"])
    assert len(configs) == 2 * 2 * 3
    assert sorted({c["seed"] for c in configs}) == [0, 1, 2]
    for c in configs:
        if c["estimator"] == "ulr":
            assert c["estimator_options"]["copies"] == 4
        else:
            assert c["estimator_options"] == {}
    assert len({run_id(c) for c in configs}) == 12


def test_only_filters_resolved_runs() -> None:
    configs = expand_suite(SMALL, [], only=["task=digits-mlp", "estimator=ulr"])
    assert [(c["task"], c["estimator"]) for c in configs] == [("digits-mlp", "ulr")]
    configs = expand_suite(SMALL, [], only=["estimator_options.copies=8"])
    assert {c["estimator"] for c in configs} == {"ulr"}
    with pytest.raises(UserError, match="matches none"):
        expand_suite(SMALL, [], only=["task=digits-vit"])


def test_run_id_ignores_runtime_keys_and_changes_with_results_keys() -> None:
    [a] = expand_suite({"runs": [{"task": "digits-mlp"}]}, {"accelerator": "cpu", "data_dir": "/x", "progress": False})
    [b] = expand_suite({"runs": [{"task": "digits-mlp"}]}, {"accelerator": "cpu"})
    [c] = expand_suite({"runs": [{"task": "digits-mlp"}]}, {"accelerator": "cpu", "lr": 0.5})
    assert run_id(a) == run_id(b) != run_id(c)
    assert run_id(a).startswith("digits-mlp__bp__") and run_id(a).endswith("__s0")
    assert len(run_id(a).split("__")[2]) == 10


@pytest.mark.parametrize("suite, overrides, fragment", [
    ({"runs": [{"task": "digits-mlp", "colour": 1}]}, [], "unknown config key 'colour'"),
    ({"runs": [{"task": "digits-mlp"}], "gird": {}}, [], "unknown suite key 'gird'"),
    ({"runs": [{"task": "digits-mlp"}]}, ["lr=-1"], "'lr' must be a number > 0"),
    ({"runs": [{"task": "digits-mlp"}]}, ["optimizer=rmsprop"], "'optimizer' must be one of sgd, adam, adamw"),
    ({"runs": [{"task": "digits-mlp"}]}, ["batch_size=0"], "'batch_size' must be an integer >= 1"),
    ({"runs": [{"task": "no-such-task"}]}, [], "unknown task 'no-such-task'"),
    ({"runs": [{"task": "digits-mlp", "estimator": "nope"}]}, [], "unknown estimator 'nope'"),
    ({"runs": [{"task": "digits-mlp", "estimator": "ulr", "estimator_options": {"copies": "many"}}]}, [],
     "option 'copies'"),
    ({"runs": [{"task": "digits-mlp", "model_options": {"depth": 3}}]}, [], "no model option 'depth'"),
    ({"runs": [{"task": "digits-mlp"}]}, ["seeds=[-1]"], "'seeds'"),
    (SMALL, ["estimator_options.probes=4"], "no estimator of this suite"),
    ({"runs": [{"task": "digits-mlp", "robustness": {"colour": 1}}]}, [], "unknown robustness setting"),
])
def test_bad_input_is_one_line_user_error(suite: dict, overrides: list, fragment: str) -> None:
    from lrbench.suite.errors import user_error_types

    with pytest.raises(user_error_types()) as info:
        expand_suite(suite, overrides)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content, args, fragment", [
    ("grid: {task: [digits-mlp]\nestimator: [bp]\n", [], "malformed YAML"),
    ("runs: [{task: digits-mlp, max_epochs: 1}]\n", ["colour=red"], "unknown config key 'colour'"),
    ("runs: [{task: digits-mlp, max_epochs: 1}]\n", ["max_epochs=zero"], "'max_epochs' must be an integer"),
    ("runs: [{task: digits-mlp, max_epochs: 1, lr: fast}]\n", [], "'lr' must be a number"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list, fragment: str) -> None:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(content)
    out = tmp_path / "out"
    code = main(["run", str(suite_file), "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lrbench: error: ") and fragment in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_cli_list_prints_run_ids_without_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "quick", "--out", str(tmp_path / "o"), "--list", "accelerator=cpu",
                 "--only", "task=digits-mlp"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 4
    assert all(line.startswith("digits-mlp__") and line.endswith("to run") for line in lines)
    assert not (tmp_path / "o").exists()


def test_rules_set_values_for_matching_runs_only() -> None:
    suite = {**SMALL, "rules": [{"match": {"task": "digits-cnn", "estimator": ["ulr"]},
                                 "set": {"estimator_options.copies": 2, "max_epochs": 3}}]}
    by_pair = {(c["task"], c["estimator"]): c for c in expand_suite(suite)}
    assert by_pair[("digits-cnn", "ulr")]["estimator_options"]["copies"] == 2
    assert by_pair[("digits-cnn", "ulr")]["max_epochs"] == 3
    assert by_pair[("digits-mlp", "ulr")]["estimator_options"]["copies"] == 8
    assert by_pair[("digits-cnn", "bp")]["max_epochs"] == 1
    with pytest.raises(UserError, match="exactly the keys"):
        expand_suite({**SMALL, "rules": [{"match": {"task": "digits-cnn"}}]})


def test_a_yaml_without_grid_or_runs_is_one_run(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text("task: digits-cnn\nestimator: xconv\nestimator_options: {probes: 4}\nmax_steps: 3\n"
                    "accelerator: cpu\nseeds: [1, 2]\n")
    configs = expand_suite(path)
    assert [(c["task"], c["estimator"], c["seed"], c["max_steps"]) for c in configs] == [
        ("digits-cnn", "xconv", 1, 3), ("digits-cnn", "xconv", 2, 3)]
    assert configs[0]["estimator_options"]["probes"] == 4


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).resolve().parents[2]
                                                         / "suite" / "suites").glob("*.yaml")))
def test_every_builtin_suite_expands(name: str) -> None:
    configs = expand_suite(name, ["accelerator=cpu"])
    assert configs and len({run_id(c) for c in configs}) == len(configs)


def test_missing_data_is_reported_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["run", "quick", "--out", str(out), "--no-progress", "accelerator=cpu", "--only", "estimator=bp",
                 "task=mnist-mlp", f"data_dir={tmp_path / 'empty'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lrbench: error: ") and err.count("\n") == 1
    assert "mnist" in err.lower() and "matches none" not in err
    assert not out.exists()
