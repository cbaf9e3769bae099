"""Plugins from outside lrbench: --plugin modules, a suite's ``plugins:``, installed entry points; broken
ones are one line (exit 2 when asked for explicitly, a warning when discovered), built-ins keep working."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lrbench import plugins
from lrbench.suite.cli.main import main

GOOD = '''
from lrbench.estimators import register_estimator
from lrbench.estimators.bp import Backprop
from lrbench.tasks import TaskSpec, register_task
from lrbench.tasks.models import build_mlp


@register_estimator
class Doubled(Backprop):
    """BP at twice the learning rate: a plugin estimator that trains."""
    name = "bp2"
    description = "backprop with the gradient doubled [test plugin]"

    def _estimate(self, model, loss_fn, inputs, targets):
        loss, logs = super()._estimate(model, loss_fn, inputs, targets)
        for p in model.parameters():
            p.grad.mul_(2.0)
        return loss, logs


register_task(TaskSpec(name="digits-mlp-narrow", family="mlp", dataset="digits", model_factory=build_mlp,
                       model_options={"widths": (16,), "activation": "relu", "norm": "none"},
                       description="MLP 64-16-10 [test plugin]", target=0.8, budget={"max_epochs": 1},
                       batch_size=32, lr=3e-3))
'''

BAD = {
    "import_error": ("import lrbench_no_such_dependency\n",
                     "its import needs module 'lrbench_no_such_dependency', which is not installed"),
    "raises": ("raise RuntimeError('half-written plugin')\n", "failed: RuntimeError: half-written plugin"),
    "name_clash": ('''
        from lrbench.estimators import register_estimator
        from lrbench.estimators.bp import Backprop

        @register_estimator
        class Mine(Backprop):
            name = "bp"
            description = "my bp"
        ''', "estimator name 'bp' of name_clash.Mine is already taken by lrbench.estimators.bp.Backprop"),
    "missing_estimate": ('''
        from lrbench.estimators import Estimator, register_estimator

        @register_estimator
        class Lazy(Estimator):
            name = "lazy"
            description = "declares itself but computes nothing"
        ''', "does not implement _estimate() (estimate() is the base class's template that calls it)"),
    "bad_option": ('''
        from lrbench.estimators import Option, register_estimator
        from lrbench.estimators.bp import Backprop

        @register_estimator
        class Opt(Backprop):
            name = "opt"
            description = "an option of an unknown kind"
            options = {"width": Option(3, "integer", "a width")}
        ''', "option 'width' has kind 'integer'; valid kinds: int, float"),
    "bad_choice": ('''
        from lrbench.estimators import Option, register_estimator
        from lrbench.estimators.bp import Backprop

        @register_estimator
        class Opt(Backprop):
            name = "opt"
            description = "a default outside its choices"
            options = {"mode": Option("c", "choice", "a mode", choices=("a", "b"))}
        ''', "option 'mode' defaults to 'c', which is not one of its choices a, b"),
    "task_clash": ('''
        from lrbench.tasks import get_task, register_task

        register_task(get_task("digits-mlp").with_options("digits-cnn", widths=(8,)))
        ''', "task name 'digits-cnn' is already taken"),
    "bad_task": ('''
        from lrbench.tasks import register_task, get_task
        from dataclasses import replace

        register_task(replace(get_task("digits-mlp"), name="my-task", dataset="imagenet-1k"))
        ''', "unknown dataset 'imagenet-1k'"),
    "half_registered": ('''
        from lrbench.estimators import register_estimator
        from lrbench.estimators.bp import Backprop

        @register_estimator
        class First(Backprop):
            name = "first-ok"
            description = "fine"

        raise ValueError("the second half is broken")
        ''', "failed: ValueError: the second half is broken"),
}


def write(folder: Path, name: str, code: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_plugin_one_line_exit_2_and_lrbench_keeps_working(name: str, tmp_path: Path, capsys,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, needle = BAD[name]
    write(tmp_path, name, code)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "list", "estimators", "--plugin", name)
    lines = err.strip().splitlines()
    assert status == 2 and out == "" and len(lines) == 1, (status, out, err)
    assert lines[0].startswith(f"lrbench: error: plugin {name}") and needle in lines[0], lines[0]
    assert "Traceback" not in err
    status, out, err = run_cli(capsys, "list", "estimators")   # the rest of lrbench keeps working
    assert status == 0 and "bp " in out and "[built-in]" in out and "first-ok" not in out   # rolled back


def test_plugin_module_by_name_or_file_is_listed_with_its_source(tmp_path: Path, capsys, monkeypatch) -> None:
    write(tmp_path, "good_plugin", GOOD)
    monkeypatch.chdir(tmp_path)
    status, out, _ = run_cli(capsys, "--plugin", "good_plugin", "list", "estimators")
    assert status == 0
    assert [line for line in out.splitlines() if line.startswith("bp2 ")] == [
        "bp2      backprop with the gradient doubled [test plugin]  [--plugin good_plugin]"]
    assert plugins.origin("task", "digits-mlp-narrow") == "--plugin good_plugin"
    assert plugins.origin("task", "digits-mlp") == "built-in"


def test_plugin_given_as_a_file_path(tmp_path: Path, capsys) -> None:
    write(tmp_path, "file_plugin", GOOD)
    status, out, _ = run_cli(capsys, "list", "estimators", "--plugin", str(tmp_path / "file_plugin.py"))
    assert status == 0 and f"[--plugin {tmp_path / 'file_plugin.py'}]" in out


def test_missing_plugin_file_is_one_line(tmp_path: Path, capsys) -> None:
    status, _, err = run_cli(capsys, "list", "estimators", "--plugin", str(tmp_path / "nope.py"))
    assert status == 2 and err.strip() == (f"lrbench: error: plugin {tmp_path / 'nope.py'}: file not found; "
                                           "give the path of an existing .py file")


def test_not_installed_module_names_the_fix(capsys) -> None:
    status, _, err = run_cli(capsys, "run", "quick", "--list", "--plugin", "lrbench_nowhere")
    assert status == 2 and err.strip() == (
        "lrbench: error: plugin lrbench_nowhere: module 'lrbench_nowhere' not found; install it, or give a "
        "module importable from the current folder (or a path to a .py file)")


def test_suite_mixing_builtin_and_plugin_runs_reports_and_resumes(tmp_path: Path, capsys) -> None:
    """A suite file with ``plugins:`` (the module beside it) mixes built-in and plugin estimators and tasks:
    4 runs, a report naming them, and a second run skips all four."""
    write(tmp_path, "good_plugin", GOOD)
    suite = tmp_path / "mixed.yaml"
    suite.write_text("plugins: [good_plugin]\n"
                     "defaults: {max_steps: 2, max_epochs: null, train_subset: 64, accelerator: cpu, "
                     "grad_quality_every: null}\n"
                     "grid: {task: [digits-mlp, digits-mlp-narrow], estimator: [bp, bp2]}\n")
    out = tmp_path / "results"
    status, text, err = run_cli(capsys, "run", str(suite), "--out", str(out), "--no-progress")
    assert status == 0, err
    assert "4 runs: 4 run now, 0 already done, 0 failed" in text
    records = sorted(out.glob("runs/*.json"))
    assert len(records) == 4
    status, text, err = run_cli(capsys, "report", str(out))
    assert status == 0, err
    report = (out / "report" / "report.md").read_text()
    assert "bp2" in report and "digits-mlp-narrow" in report
    status, text, _ = run_cli(capsys, "run", str(suite), "--out", str(out), "--no-progress")
    assert status == 0 and "4 runs: 0 run now, 4 already done, 0 failed" in text


def test_bad_plugins_entry_in_a_suite_is_one_line(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("plugins: not-a-list\ngrid: {task: [digits-mlp]}\n")
    status, _, err = run_cli(capsys, "run", str(suite), "--list")
    assert status == 2 and "'plugins' must be a list" in err and len(err.strip().splitlines()) == 1


def test_broken_entry_point_warns_in_one_line_and_builtins_still_list(tmp_path: Path, capsys,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed plugins are found through importlib.metadata: a fake distribution on sys.path with one
    good and two broken entry points."""
    dist = tmp_path / "fakeplug-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[lrbench.estimators]\nbp2 = good_plugin:Doubled\nbroken = fakeplug_missing:Thing\n"
        "wrongname = good_plugin:Doubled\n[lrbench.tasks]\nnarrow = good_plugin\n")
    write(tmp_path, "good_plugin", GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_entry_points_done", False)
    status, out, err = run_cli(capsys, "list", "estimators")
    assert status == 0, err
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("lrbench: warning: plugin entry point") for w in warnings), err
    assert "entry point 'broken' (lrbench.estimators, fakeplug 0.3): module 'fakeplug_missing' not found" in \
        warnings[0] and "pip uninstall fakeplug" in warnings[0]
    assert "make the entry point's name equal the class's name" in warnings[1]
    assert "[entry point fakeplug 0.3]" in out and "bp       backpropagation" in out
    assert plugins.origin("task", "digits-mlp-narrow") == "entry point fakeplug 0.3"
