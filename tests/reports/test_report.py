"""Report building: frames from result files, statistics, sections drawn only where data exist, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lrbench.reports import ReportError, build_report, load_results
from lrbench.reports.stats import mean_ci, performance_profile, performance_ratios, summarize
from lrbench.suite.cli.main import main
from tests.reports.test_report_fixture import make_record, synthetic_records, write_synthetic_results

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def report_dir(results_dir: Path) -> Path:
    build_report(results_dir)
    return results_dir / "report"


def test_load_results_frames(results_dir: Path) -> None:
    results = load_results(results_dir)
    records = synthetic_records()
    assert len(results.runs) == len(records)
    assert set(results.unfinished["status"]) == {"failed", "diverged"}
    ulr = results.runs[(results.runs["estimator"] == "ulr") & (results.runs["status"] == "completed")]
    assert sorted(ulr["copies"].unique()) == [4.0, 16.0, 64.0]
    # Labels name exactly the settings that vary among one estimator's runs.
    assert "ulr (copies=64, sigma=0.01, baseline=clean, antithetic)" in set(ulr["label"])
    bp = results.runs[results.runs["estimator"] == "bp"]
    assert set(bp.loc[bp["task"] != "digits-vit", "label"]) == {"bp"}  # nothing varies there
    # labels are per task: the ViT depth sweep never leaks into the other tasks' labels
    assert set(bp.loc[bp["task"] == "digits-vit", "label"]) == {"bp (depth=1)", "bp (depth=2)", "bp (depth=4)"}
    assert sorted(bp.loc[bp["task"] == "digits-vit", "depth"]) == [1.0, 2.0, 4.0]
    # Seeds of one variant share the variant hash.
    bp_mlp = results.runs[(results.runs["estimator"] == "bp") & (results.runs["task"] == "digits-mlp")]
    assert bp_mlp["variant"].nunique() == 1 and len(bp_mlp) == 3
    assert len(results.history) == sum(len((r["metrics"] or {}).get("history") or []) for r in records)
    corr = results.robustness[results.robustness["family"] == "corruption"]
    assert set(corr["kind"]) == {"gaussian_noise", "impulse_noise", "contrast", "gaussian_blur"}
    assert set(corr["level"]) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_tidy_has_one_row_per_run_and_metric(results_dir: Path) -> None:
    tidy = load_results(results_dir).tidy()
    assert not tidy.duplicated(["run_id", "metric"]).any()
    first = synthetic_records()[0]
    row = tidy[(tidy["run_id"] == first["run_id"]) & (tidy["metric"] == "test_accuracy_final")]
    assert row["value"].item() == pytest.approx(first["metrics"]["test_accuracy_final"])


def test_mean_ci_is_the_student_t_interval() -> None:
    mean, half, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))  # t_{0.975,2} · s/√n, s = 1
    mean, half, n = mean_ci([0.7])
    assert mean == 0.7 and n == 1 and math.isnan(half)
    frame = pd.DataFrame({"g": ["a", "a", "b"], "v": [0.5, 0.7, 0.9]})
    table = summarize(frame, ["g"], "v")
    assert table.loc[table["g"] == "b", "text"].item() == "0.9000 (n=1, no CI)"
    assert table.loc[table["g"] == "a", "text"].item().startswith("0.6000 ± ")


def test_performance_profile_by_hand() -> None:
    # Two problems; A is fastest on p1, B on p2 (2x faster than A); C never reaches the target.
    times = pd.DataFrame({"solver": ["A", "A", "B", "B", "C", "C"], "problem": ["p1", "p2"] * 3,
                          "t": [10.0, 20.0, 15.0, 10.0, None, None]})
    ratios = performance_ratios(times, problem="problem", solver="solver", time="t")
    got = {(r.solver, r.problem): r.ratio for r in ratios.itertuples()}
    assert got[("A", "p1")] == 1.0 and got[("A", "p2")] == 2.0 and got[("B", "p1")] == 1.5
    assert math.isinf(got[("C", "p1")])
    profile = performance_profile(ratios, taus=[1.0, 1.5, 2.0])
    at = {(r.solver, r.tau): r.fraction for r in profile.itertuples()}
    assert at[("A", 1.0)] == 0.5 and at[("A", 2.0)] == 1.0
    assert at[("B", 1.0)] == 0.5 and at[("B", 1.5)] == 1.0
    assert at[("C", 2.0)] == 0.0


def test_report_files_and_sections(report_dir: Path) -> None:
    index = (report_dir / "index.html").read_text()
    markdown = (report_dir / "report.md").read_text()
    figures = sorted(p.name for p in (report_dir / "figures").glob("*.png"))
    assert {"accuracy_vs_epoch.png", "accuracy_vs_time.png", "performance_profile.png",
            "gradient_quality_vs_copies.png", "gradient_quality_vs_probes.png", "memory_throughput_vs_copies.png",
            "memory_throughput_vs_batch_size.png", "memory_throughput_vs_depth.png", "robustness_attacks.png",
            "robustness_corruptions.png"} <= set(figures)
    for name in figures:  # every figure is a real PNG and is shown on the page
        assert (report_dir / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="figures/{name}"' in index and f"(figures/{name})" in markdown
    for title in ("Final accuracy", "Time to target", "Memory and throughput", "Gradient quality", "Robustness",
                  "Run metadata", "Failed and diverged runs"):
        assert f"<h2>{title}</h2>" in index and f"## {title}" in markdown
    # Failed and diverged runs are named with their messages, never dropped.
    for record in synthetic_records():
        if record["status"] != "completed":
            assert record["run_id"] in index and record["message"] in markdown
    assert "(n=1, no CI)" in markdown
    csv = pd.read_csv(report_dir / "results.csv")
    assert {"run_id", "metric", "value", "status", "label"} <= set(csv.columns)


def test_final_accuracy_numbers_in_report(results_dir: Path, report_dir: Path) -> None:
    values = [r["metrics"]["test_accuracy_final"] for r in synthetic_records()
              if r["config"]["task"] == "digits-mlp" and r["config"]["estimator"] == "bp"]
    mean, half, _ = mean_ci(values)
    assert f"| digits-mlp | bp | {mean:.4f} ± {half:.4f} | 3 | 0 |" in (report_dir / "report.md").read_text()


def test_sections_only_where_data_exist(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for seed in (0, 1):
        record = make_record("digits-mlp", "bp", {}, seed, quality=1.0)
        record["metrics"]["time_to_target"] = None
        (runs / f"{record['run_id']}.json").write_text(json.dumps(record))
    index = build_report(tmp_path).read_text()
    assert "<h2>Final accuracy</h2>" in index and "<h2>Accuracy during training</h2>" in index
    for absent in ("Gradient quality", "Robustness", "Time to target", "Failed and diverged runs"):
        assert f"<h2>{absent}</h2>" not in index
    assert not (tmp_path / "report" / "figures" / "memory_throughput_vs_copies.png").exists()


def test_missing_or_empty_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        load_results(tmp_path / "nope")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "junk.json").write_text("{not json")
    with pytest.raises(ReportError, match="no run results"):
        load_results(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrbench: error: no run results") and err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_report_with_out(results_dir: Path, tmp_path: Path) -> None:
    assert main(["report", str(results_dir), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "index.html").exists() and (tmp_path / "out" / "results.csv").exists()


def test_reports_never_import_torch() -> None:
    code = ("import sys, reports.build, reports.paper, reports.sections;"
            "bad = [m for m in ('torch', 'suite', 'tasks', 'estimators') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_seeds_pointing_at_their_own_seeds_source_are_one_variant(tmp_path: Path) -> None:
    """Fine-tuned runs (``init_from``) and transfer-attacked runs name their own seed's source run; the
    seeds of one setting must still group as one variant (so the report gives them one mean ± CI)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for seed in (0, 1, 2):
        record = make_record("fmnist-mlp", "ulr", {"copies": 4}, seed, quality=0.8,
                             init_from=f"mnist-mlp__bp__693d0a393d__s{seed}")
        record["config"]["robustness"] = {"subset_size": 10, "transfer_source": f"fmnist-mlp__bp__0123456789__s{seed + 1000}"}
        (runs / f"{record['run_id']}.json").write_text(json.dumps(record))
    scratch = make_record("fmnist-mlp", "ulr", {"copies": 4}, 0, quality=0.8)
    (runs / f"{scratch['run_id']}.json").write_text(json.dumps(scratch))
    frame = load_results(tmp_path).runs.set_index("seed")
    tuned = frame[frame["cfg:init_from"].notna()]
    assert tuned["variant"].nunique() == 1 and len(tuned) == 3
    assert set(tuned["cfg:init_from"]) == {"mnist-mlp__bp__693d0a393d"}
    assert frame["variant"].nunique() == 2  # from scratch stays its own variant
