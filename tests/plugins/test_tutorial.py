"""docs/EXTENDING.md's walkthrough works as written: its code is examples/tutorial/, which passes the
conformance check and runs beside BP, ULR and ALR from a suite's ``plugins:`` list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lrbench.conformance import check_estimator
from lrbench.plugins import load_plugins
from lrbench.suite.cli.main import main

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "examples" / "tutorial"


def test_the_guide_shows_the_tutorial_files_verbatim() -> None:
    guide = (REPO / "docs" / "EXTENDING.md").read_text()
    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```", guide, flags=re.S)
    assert (TUTORIAL / "my_method.py").read_text() in blocks
    assert (TUTORIAL / "compare.yaml").read_text() in blocks


def test_tutorial_estimator_conforms() -> None:
    load_plugins([str(TUTORIAL / "my_method.py")])
    report = check_estimator("mine", families=("mlp",), n=4)
    assert report.passed and 2.5 <= report.statistics["mlp"]["ratio"] <= 6.5


def test_compare_suite_resolves_with_its_plugin(capsys) -> None:
    assert main(["run", str(TUTORIAL / "compare.yaml"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("__")[1] for line in lines] == ["bp", "ulr", "alr", "mine"]


@pytest.mark.slow
def test_compare_suite_runs_and_reports(tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    assert main(["run", str(TUTORIAL / "compare.yaml"), "--out", str(out), "--no-progress", "max_epochs=1"]) == 0
    assert main(["report", str(out)]) == 0
    assert "mine" in (out / "report" / "report.md").read_text()
