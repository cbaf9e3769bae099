"""Paper specs: every spec loads and expands in the runner's vocabulary; drawing puts the published
numbers beside ours and compares them; the paper command runs a tiny spec end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from lrbench.reports import ReportError, load_results
from lrbench.reports.build import build_report
from lrbench.reports.paper_draw import paper_section_builder
from lrbench.reports.paper_spec import list_specs, load_spec
from lrbench.reports.paper_tables import compare, ours_table, published_table
from lrbench.reports.sections import DEFAULT_SECTIONS
from lrbench.suite.cli.main import main
from tests.reports.test_report_fixture import make_record, write_synthetic_results

REQUIRED = {"xconv-table1", "xconv-memory", "xconv-variance", "ulr-architectures", "ulr-variance-reduction",
            "ulr-robustness", "alr-copies", "ulr-hybrid", "ulr-finetune", "alr-parallel"}
# Training-set sizes for the quick-budget size check (samples a run may process).
TRAIN_SIZE = {"digits": 1500, "mnist": 60000, "fmnist": 60000, "cifar10": 50000, "cifar100": 50000}


def samples_processed(config) -> float:
    """Training samples a run processes: min(epochs × training-set size, steps × batch)."""
    from lrbench.tasks import get_task

    size = config["train_subset"] or TRAIN_SIZE.get(get_task(config["task"]).dataset, 60000)
    by_epochs = config["max_epochs"] * size if config["max_epochs"] else math.inf
    by_steps = config["max_steps"] * config["batch_size"] if config["max_steps"] else math.inf
    return min(by_epochs, by_steps)


def test_required_specs_exist_with_both_budgets() -> None:
    specs = {s.name: s for s in list_specs()}
    assert REQUIRED <= set(specs)
    for spec in specs.values():
        assert spec.path is not None and spec.path.stem == spec.name
        assert set(spec.budgets) == {"quick", "full"}, spec.name
        assert spec.citation and spec.limits, f"{spec.name}: citation and limits must be stated"
        assert spec.note("quick") and spec.note("full")


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_spec_suites_expand_in_runner_vocabulary(name: str) -> None:
    config = pytest.importorskip("lrbench.suite.cli.suite_files", reason="the runner's suite.cli.suite_files is not available")
    spec = load_spec(name)
    quick = config.expand_suite(spec.suite("quick"))
    full = config.expand_suite(spec.suite("full"))
    assert 1 <= len(quick) <= 60, f"{name}: quick budget must stay small ({len(quick)} runs)"
    assert len(full) >= len(quick)
    assert all(c["accelerator"] == "cpu" for c in quick)
    for c in quick:  # short: at most a few epochs of MNIST-sized data (the digits tasks are 8×8 images)
        assert samples_processed(c) <= 400_000, (name, c["task"], c["estimator"])


def test_xconv_table1_full_budget_is_the_papers_grid() -> None:
    config = pytest.importorskip("lrbench.suite.cli.suite_files", reason="the runner's suite.cli.suite_files is not available")
    configs = config.expand_suite(load_spec("xconv-table1").suite("full"))
    cells = {(c["estimator"], c["estimator_options"].get("probes"), c["batch_size"]) for c in configs}
    assert len(cells) == 7 * 6
    for c in configs:  # epochs = 10 + 2·log2(B)
        assert c["max_epochs"] == 10 + 2 * int(math.log2(c["batch_size"]))
        assert c["lr"] == pytest.approx(3e-3) and c["optimizer"] == "adam"


def _xconv_results(tmp_path: Path, offset: float) -> Path:
    """Runs shaped like xconv-table1's: accuracy = published + offset on B in {32, 64}, r in {2, 8}."""
    spec = load_spec("xconv-table1")
    published = spec.published
    runs = tmp_path / "runs"
    runs.mkdir(parents=True)
    for row, values in zip(published["rows"], published["values"], strict=True):
        if row not in ("exact", "r=2", "r=8"):
            continue
        for batch, value in list(zip(published["cols"], values, strict=True))[:2]:
            estimator, options = ("bp", {}) if row == "exact" else ("xconv", {"probes": int(row[2:])})
            for seed in (0, 1):
                record = make_record("mnist-xconvnet", estimator, options, seed, quality=1.0, batch_size=batch)
                record["metrics"]["test_accuracy_final"] = value + offset + (0.002 if seed else -0.002)
                (runs / f"{record['run_id']}.json").write_text(json.dumps(record))
    return tmp_path


def test_table_beside_published_and_comparison(tmp_path: Path) -> None:
    spec = load_spec("xconv-table1")
    item = spec.draw[0]
    results = load_results(_xconv_results(tmp_path, offset=-0.01))
    ours = ours_table(spec, item, results)
    assert set(ours["row"]) == {"exact", "r=2", "r=8"} and set(ours["col"]) == {"B=32", "B=64"}
    assert (ours["n"] == 2).all()
    stats = compare(ours, published_table(spec, item))
    assert stats["cells"] == 6
    assert stats["mean_diff"] == pytest.approx(-0.01)
    assert stats["spearman"] == pytest.approx(1.0)
    assert stats["row_order_ours"] == stats["row_order_published"] == ["exact", "r=8", "r=2"]
    index = build_report(tmp_path, builders=(paper_section_builder(spec, "quick"), *DEFAULT_SECTIONS))
    markdown = (index.parent / "report.md").read_text()
    assert "Published — MNIST test accuracy" in markdown and "Ours − published" in markdown
    assert "| exact | 0.9822 ± 0.0254 | 0.9830 ± 0.0254 |" in markdown  # mean ± t(0.975,1)·s/√2, s = 0.004/√2·2
    assert "| exact | -0.0100 | -0.0100 |" in markdown
    assert "0.9922" in markdown  # the published cell itself
    assert markdown.index("## Paper:") < markdown.index("## Overview")
    assert (index.parent / "figures" / "paper_xconv-table1_0.png").exists()


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_spec_draws_from_any_results(tmp_path: Path, name: str) -> None:
    """Drawing never crashes: with non-matching runs it says so in a note."""
    results = load_results(write_synthetic_results(tmp_path / "r"))
    section = paper_section_builder(load_spec(name), "quick")(results, tmp_path / "figures")
    assert section.title.startswith("Paper: ") and section.blocks


def test_paper_list_and_unknown(capsys: pytest.CaptureFixture) -> None:
    assert main(["paper", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in REQUIRED)
    assert main(["paper", "no-such-paper"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrbench: error: unknown paper 'no-such-paper'; valid papers: ") and err.count("\n") == 1


def test_malformed_spec_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntitle: t\ncitation: c\nbudgets: {quick: {suite: 3}}\ndraw: [{kind: table}]\n")
    with pytest.raises(ReportError, match="budget 'quick' needs a 'suite' mapping"):
        load_spec(bad)
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ReportError, match="malformed paper spec"):
        load_spec(bad)


def test_transfer_source_points_at_the_bp_run() -> None:
    pytest.importorskip("lrbench.suite.training.results_store", reason="the runner's results store is not available")
    from lrbench.schema import run_id
    from lrbench.suite.cli.commands.paper import attach_transfer_source

    base = {"task": "mnist-mlp", "seed": 0, "estimator_options": {}, "robustness": {"subset_size": 10}}
    configs = [{**base, "estimator": "ulr"}, {**base, "estimator": "bp"}, {**base, "estimator": "alr", "seed": 1}]
    out = attach_transfer_source(configs, {"estimator": "bp"})
    assert [c["estimator"] for c in out] == ["bp", "ulr", "alr"]  # surrogate first
    assert out[1]["robustness"]["transfer_source"] == run_id(configs[1])
    assert "transfer_source" not in out[2]["robustness"]  # no bp run with seed 1
    assert "transfer_source" not in out[0]["robustness"]


def test_transfer_surrogate_with_seed_offset_is_never_the_attacked_models_twin() -> None:
    from lrbench.schema import run_id
    from lrbench.suite.cli.commands.paper import attach_transfer_source
    from lrbench.suite.errors import UserError

    base = {"task": "mnist-mlp", "estimator_options": {}, "robustness": {"subset_size": 10}}
    configs = [{**base, "estimator": e, "seed": s} for s in (0, 1) for e in ("bp", "ulr")]
    out = attach_transfer_source(configs, {"estimator": "bp", "seed_offset": 1000})
    twins, attacked = out[:2], out[2:]
    assert [(c["estimator"], c["seed"], c["robustness"]) for c in twins] == [("bp", 1000, None), ("bp", 1001, None)]
    assert len(attacked) == 4  # every original run, the BP ones included, is attacked
    for config in attacked:
        source = config["robustness"]["transfer_source"]
        assert source == run_id(twins[config["seed"]]) and source != run_id(config)
        assert source.endswith(f"__s{config['seed'] + 1000}")
    early = [*configs, {**base, "estimator": "bp", "seed": 0, "max_steps": 5}]
    with pytest.raises(UserError, match="matches several runs of one task and seed"):
        attach_transfer_source(early, {"estimator": "bp", "seed_offset": 1000})
    out = attach_transfer_source([{**c, "max_steps": c.get("max_steps")} for c in early],
                                 {"estimator": "bp", "max_steps": None, "seed_offset": 1000})
    assert [c["seed"] for c in out[:2]] == [1000, 1001] and len(out) == 7


def test_pretrained_runs_start_from_the_matching_run_of_their_seed() -> None:
    from lrbench.schema import run_id
    from lrbench.suite.cli.commands.paper import attach_pretrained
    from lrbench.suite.errors import UserError

    source = {"task": "mnist-mlp", "estimator": "bp", "estimator_options": {}, "init_from": None}
    tuned = {"task": "fmnist-mlp", "estimator": "ulr", "estimator_options": {}, "init_from": "pretrained"}
    scratch = {**tuned, "init_from": None}
    configs = [{**c, "seed": s} for s in (0, 1) for c in (tuned, scratch, source)]
    out = attach_pretrained(configs, {"task": "mnist-mlp", "estimator": "bp"})
    assert [(c["task"], c["seed"]) for c in out[:2]] == [("mnist-mlp", 0), ("mnist-mlp", 1)]  # sources first
    starts = {(c["seed"], c["init_from"]) for c in out if c["task"] == "fmnist-mlp"}
    assert starts == {(0, run_id(out[0])), (1, run_id(out[1])), (0, None), (1, None)}
    with pytest.raises(UserError, match="needs a run matching"):
        attach_pretrained([{**tuned, "seed": 3}], {"task": "mnist-mlp", "estimator": "bp"})


def test_paper_command_end_to_end(tmp_path: Path) -> None:
    """A tiny spec (digits-mlp, 3 steps) through the real runner, then the report with the paper first."""
    pytest.importorskip("lrbench.suite.training.runner", reason="the runner is not available")
    spec = {
        "name": "tiny", "title": "tiny check", "citation": "none (test)", "limits": "a test",
        "budgets": {"quick": {"note": "three steps", "suite": {
            "defaults": {"task": "digits-mlp", "max_steps": 3, "max_epochs": None, "accelerator": "cpu",
                         "grad_quality_every": 1, "progress": False},
            "grid": {"estimator": ["bp", "ulr"]}, "estimators": {"ulr": {"estimator_options": {"copies": 4}}},
            "seeds": [0]}}},
        "draw": [{"kind": "bars", "metric": "test_accuracy_final", "x": "{task}", "hue": "{estimator}"}],
        "published": None,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["paper", str(path), "--out", str(out)]) == 0
    assert len(list((out / "runs").glob("*.json"))) == 2
    markdown = (out / "report" / "report.md").read_text()
    assert "## Paper: tiny check" in markdown and "Published numbers: none drawn" in markdown
    assert (out / "report" / "figures" / "paper_tiny_0.png").exists()


SHARED = Path(__file__).resolve().parents[3] / "shared"


def test_published_xconv_table_matches_estimators_md() -> None:
    """The spec's published table is the one in ../shared/docs/ESTIMATORS.md, cell for cell."""
    doc = SHARED / "docs" / "ESTIMATORS.md"
    if not doc.is_file():
        pytest.skip(f"{doc} not found (the shared docs sit beside the checkout)")
    rows = {}
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and (cells[0] == "exact" or cells[0].startswith("r=")) and len(cells) == 7:
            rows[cells[0]] = [float(c) for c in cells[1:]]
    published = load_spec("xconv-table1").published
    assert published["cols"] == [32, 64, 128, 256, 512, 1024]
    assert dict(zip(published["rows"], published["values"], strict=True)) == rows


@pytest.mark.slow
def test_xconv_table1_quick_budget_on_mnist(tmp_path: Path) -> None:
    """The real quick budget (12 MNIST runs, minutes on 2 cores): our table keeps the paper's row order."""
    pytest.importorskip("lrbench.suite.training.runner", reason="the runner is not available")
    raw = SHARED / "datasets" / "MNIST" / "raw"
    if not raw.is_dir():
        pytest.skip(f"MNIST not found at {raw}")
    import shutil

    shutil.copytree(raw, tmp_path / "data" / "MNIST" / "raw")
    out = tmp_path / "out"
    assert main(["paper", "xconv-table1", "--budget", "quick", "--out", str(out), "--no-progress",
                 "--data-dir", str(tmp_path / "data")]) == 0
    spec = load_spec("xconv-table1")
    ours = ours_table(spec, spec.draw[0], load_results(out))
    assert len(ours) == 12 and (ours["n"] == 3).all()
    stats = compare(ours, published_table(spec, spec.draw[0]))
    assert stats["row_order_ours"][0] == "exact" and stats["row_order_ours"][-1] == "r=2"
    assert ours.loc[ours["row"] == "exact", "mean"].min() >= 0.93
    assert ours["mean"].min() >= 0.75
    assert "Ours − published" in (out / "report" / "report.md").read_text()


def test_failed_run_of_a_table_is_named(tmp_path: Path) -> None:
    spec = load_spec("xconv-table1")
    root = _xconv_results(tmp_path, offset=0.0)
    record = make_record("mnist-xconvnet", "xconv", {"probes": 4}, 0, quality=0.5, status="failed",
                         message="RuntimeError: out of memory", batch_size=32)
    (root / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    section = paper_section_builder(spec, "quick")(load_results(root), tmp_path / "figures")
    notes = " ".join(b.text for b in section.blocks if hasattr(b, "text"))
    assert f"1 run(s) of this table did not complete ({record['run_id']})" in notes


def test_cells_pooling_different_configs_are_flagged(tmp_path: Path) -> None:
    spec = load_spec("xconv-table1")
    root = _xconv_results(tmp_path, offset=0.0)
    record = make_record("mnist-xconvnet", "bp", {}, 5, quality=1.0, batch_size=32, lr=0.01)  # another lr
    (root / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    section = paper_section_builder(spec, "quick")(load_results(root), tmp_path / "figures")
    notes = " ".join(b.text for b in section.blocks if hasattr(b, "text"))
    assert "1 cell(s) pool runs of different configurations (e.g. exact, B=32: 2 configs)" in notes
