"""The scoreboard against numbers computed directly from the run records; old records read as missing."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from lrbench.reports import build_report, load_results
from lrbench.reports.cost_plots import pareto_front
from lrbench.reports.cost_sections import scoreboard
from lrbench.reports.document import Document
from lrbench.reports.machine import wall_clock_verdict
from lrbench.reports.markdown import write_markdown
from lrbench.reports.summary import run_summary
from tests.reports.cost_records import cost_records, write_records
from tests.reports.test_report_fixture import write_synthetic_results


def _variant(record: dict) -> tuple:
    return record["config"]["estimator"], tuple(sorted(record["config"]["estimator_options"].items()))


def _independent(records: list[dict], task: str, variant: tuple) -> dict[str, float]:
    """Accuracy mean ± t-interval, forward-pass/FLOP cost to target ×BP, memory ×BP, straight from the JSON."""
    mine = [r for r in records if r["config"]["task"] == task and _variant(r) == variant]
    bp = [r for r in records if r["config"]["task"] == task and r["config"]["estimator"] == "bp"]
    acc = [r["metrics"]["test_accuracy_final"] for r in mine]
    half = stats.t.ppf(0.975, len(acc) - 1) * statistics.stdev(acc) / math.sqrt(len(acc))

    def cost(runs: list[dict], unit: str) -> float:
        return statistics.median(r["metrics"]["time_to_target"][unit] or math.inf for r in runs)

    def memory(runs: list[dict]) -> float:
        return statistics.mean(r["metrics"]["peak_memory_bytes"]["max"] for r in runs)

    bp_acc = statistics.mean(r["metrics"]["test_accuracy_final"] for r in bp)
    return {"accuracy": statistics.mean(acc), "half": half, "delta": statistics.mean(acc) - bp_acc,
            "fp": cost(mine, "forward_passes") / cost(bp, "forward_passes"),
            "flops": cost(mine, "flops") / cost(bp, "flops"), "memory": memory(mine) / memory(bp),
            "cosine": statistics.mean((r["metrics"]["gradient_quality"] or {"mean_cosine": math.nan})["mean_cosine"]
                                      for r in mine)}


def _scoreboard_rows(markdown: str, task: str) -> dict[str, dict[str, str]]:
    """The scoreboard table of ``task`` in report.md: variant -> column -> cell text (bold markers removed)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{task} — target"))
    header = [c.strip() for c in lines[start + 2].strip("|").split("|")]
    rows = {}
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], str, str]:
    root = tmp_path_factory.mktemp("cost")
    records = cost_records()
    index = build_report(write_records(root, records))
    return records, (index.parent / "report.md").read_text(), index.read_text()


def test_scoreboard_numbers_equal_the_records(report: tuple[list[dict], str, str]) -> None:
    records, markdown, _ = report
    checked = 0
    for task in ("digits-mlp", "digits-cnn"):
        rows = _scoreboard_rows(markdown, task)
        labels = {("bp", ()): "bp", ("ulr", (("baseline", "clean"), ("copies", 16), ("sigma", 0.01))): "ulr K=16 clean",
                  ("ulr", (("antithetic", True), ("baseline", "clean"), ("copies", 64), ("sigma", 0.01))):
                      "ulr K=64 clean antithetic",
                  ("alr", (("copies", 16), ("sigma", 0.01))): "alr K=16"}
        assert set(rows) == set(labels.values())
        assert list(rows)[0] == "bp"  # BP, the reference, first
        for variant, label in labels.items():
            want, row = _independent(records, task, variant), rows[label]
            assert row["test accuracy"] == f"{want['accuracy']:.3g} ± {want['half']:.3g}"
            if label != "bp":
                assert row["Δ vs BP"] == f"{want['delta']:+.3g}"
                assert row["gradient cosine to BP"] == f"{want['cosine']:.3g}"
            for column, key in (("forward passes to target ×BP", "fp"), ("FLOPs to target ×BP", "flops")):
                expected = "not reached" if math.isinf(want[key]) else f"{want[key]:.3g}×"
                assert row[column] == expected
            assert row["peak memory ×BP"] == f"{want['memory']:.3g}×"
            checked += 1
    assert checked == 8
    assert "n=3 seeds per variant" in markdown and "(n=1" not in markdown


def test_scoreboard_is_first_and_marks_the_best(report: tuple[list[dict], str, str]) -> None:
    _, markdown, index = report
    assert markdown.index("## Scoreboard") < markdown.index("## ", markdown.index("## Scoreboard") + 3)
    assert index.index('data-table="scoreboard"') < index.index("<table")  + len("<table ") + 1
    mlp = markdown[markdown.index("digits-mlp — target"):].split("\n\n")[1]
    best_memory = next(line for line in mlp.splitlines() if line.startswith("| alr K=16"))
    assert "**0.353×**" in best_memory  # the lowest memory of the task, in bold
    assert "wall-clock times are comparable" in markdown and "wall s to target ×BP" in markdown
    for figure in ("accuracy_vs_cost.png", "accuracy_vs_memory.png", "accuracy_vs_forward_passes.png",
                   "accuracy_vs_flops.png", "performance_profile_forward_passes.png", "performance_profile_flops.png",
                   "gradient_cosine_over_training.png"):
        assert f"(figures/{figure})" in markdown


def _scoreboard_markdown(root: Path) -> str:
    """Only the scoreboard section, written as Markdown (faster than a whole report)."""
    results = load_results(root)
    document = Document("t", "", [scoreboard(results, root / "figures")])
    return write_markdown(document, root / "scoreboard.md").read_text()


def test_busy_machine_hides_wall_time(tmp_path: Path) -> None:
    markdown = _scoreboard_markdown(write_records(tmp_path, cost_records(load=7.5)))
    assert "wall s to target" not in markdown
    assert "load average above the CPU count (up to 7.5 on 2 CPUs)" in markdown
    runs = load_results(tmp_path).runs
    assert not wall_clock_verdict(runs).comparable


def test_old_records_read_as_missing_not_zero(tmp_path: Path) -> None:
    results = load_results(write_synthetic_results(tmp_path))  # written before cost fields existed
    for column in ("cost_forward_passes", "cost_flops", "cost_cpu_seconds", "ttt_forward_passes", "load_max"):
        assert results.runs[column].isna().all(), column
    for column in ("forward_passes", "flops", "cpu_seconds"):
        assert results.history[column].isna().all(), column
    markdown = _scoreboard_markdown(tmp_path)
    rows = _scoreboard_rows(markdown, "digits-mlp")
    assert {row["forward passes to target ×BP"] for row in rows.values()} == {"—"}
    assert "cannot be told" in markdown


def test_mixed_old_and_new_records_keep_old_ones_missing(tmp_path: Path) -> None:
    new = cost_records()
    old = [dict(r) for r in cost_records() if r["config"]["estimator"] == "alr"]
    for record in old:  # the alr runs again, as an old version of lrbench wrote them
        record["metrics"] = {k: v for k, v in record["metrics"].items() if k != "cost"}
        record["metrics"]["time_to_target"] = {k: record["metrics"]["time_to_target"][k]
                                               for k in ("target", "metric", "seconds", "steps")}
    records = [r for r in new if r["config"]["estimator"] != "alr"] + old
    runs = load_results(write_records(tmp_path, records)).runs
    alr = runs[runs["estimator"] == "alr"]
    assert alr["cost_forward_passes"].isna().all() and (runs[runs["estimator"] == "bp"]["cost_forward_passes"] > 0).all()


def test_pareto_front_by_hand() -> None:
    costs = pd.Series([1.0, 2.0, 3.0, 2.0, 5.0]).to_numpy()
    values = pd.Series([0.5, 0.7, 0.6, 0.8, 0.9]).to_numpy()
    assert pareto_front(costs, values).tolist() == [0, 3, 4]  # (2, 0.7) and (3, 0.6) are dominated by (2, 0.8)


def test_run_summary_table() -> None:
    records = cost_records()
    records[-4]["status"] = "failed"  # digits-cnn, ulr K=64 clean antithetic, seed 2
    text = run_summary([r for r in records if r["config"]["estimator"] != "alr"] +
                       [r for r in records if r["config"]["estimator"] == "alr" and r["config"]["task"] == "digits-mlp"])
    lines = text.splitlines()

    def cells(line: str) -> list[str]:
        return re.split(r"\s{2,}", line.strip())

    def row(text: str, label: str) -> list[str]:
        return cells(next(line for line in text.splitlines() if line.startswith(label + "  ")))

    # two ulr variants per task: one row per variant label, one column per task
    assert cells(lines[0]) == ["variant", "digits-cnn", "digits-mlp"]
    assert [cells(line)[0] for line in lines[2:6]] == ["bp", "alr K=16", "ulr K=16 clean", "ulr K=64 clean antithetic"]
    assert row(text, "bp")[1:] == [f"{_independent(records, t, ('bp', ()))['accuracy']:.3g} (BP)"
                                   for t in ("digits-cnn", "digits-mlp")]
    anti = row(text, "ulr K=64 clean antithetic")[1]
    assert anti.endswith("×71.5 (1 not completed)")  # digits-cnn: median(140, 168)·65/140, one seed failed
    assert row(text, "ulr K=16 clean")[1].endswith(" ×∞")
    alr = next(line for line in lines if line.startswith("alr K=16"))
    assert alr.index(row(text, "alr K=16")[1]) == lines[0].index("digits-mlp")  # ran on digits-mlp only
    for record in records:
        if record["config"]["estimator"] == "alr":
            record["status"] = "diverged"
    cnn = row(run_summary(records), "alr K=16")
    assert cnn[1:] == ["diverged", "diverged"]
