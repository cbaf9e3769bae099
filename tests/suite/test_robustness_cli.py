"""``lrbench robustness`` on a results folder and on single checkpoints (tiny digits-mlp models)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lrbench.suite.cli.main import main

TASK = "digits-mlp"
FAST = ["--subset", "120", "--eps", "0", "0.1", "0.3", "--eps-l2", "0.5", "--steps", "3", "--device", "cpu"]


def _train(seed: int, epochs: int = 8) -> torch.nn.Module:
    from lrbench.tasks import get_task

    spec = get_task(TASK)
    torch.manual_seed(seed)
    model = spec.build_model()
    data = spec.load_data()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        for x, y in data.batches("train", 64, seed=seed, epoch=epoch):
            opt.zero_grad()
            spec.loss_fn(model(x), y).mean().backward()
            opt.step()
    return model.eval()


def _write_run(out: Path, rid: str, estimator: str, seed: int, model: torch.nn.Module, status: str = "completed",
               payload: str = "state_dict", task: str = TASK) -> None:
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    record = {"schema_version": 1, "run_id": rid, "seed": seed, "status": status,
              "config": {"task": task, "estimator": estimator, "model_options": {}, "seed": seed,
                         "robustness": None},
              "metrics": {"test_accuracy_final": None, "robustness": None}}
    (out / "runs" / f"{rid}.json").write_text(json.dumps(record))
    state = model.state_dict()
    if payload == "lightning":  # a dict with a prefixed state_dict and its config
        state = {"state_dict": {f"model.{k}": v for k, v in state.items()}, "config": record["config"]}
    torch.save(state, out / "checkpoints" / f"{rid}.pt")


@pytest.fixture(scope="module")
def models():
    return {"bp": _train(0), "other": _train(1)}


@pytest.fixture()
def run_dir(tmp_path, models):
    out = tmp_path / "results"
    _write_run(out, "digits-mlp__bp__aaaa__s0", "bp", 0, models["bp"])
    _write_run(out, "digits-mlp__ulr__bbbb__s0", "ulr", 0, models["other"], payload="lightning")
    _write_run(out, "digits-mlp__ulr__cccc__s1", "ulr", 1, models["other"], status="failed")
    return out


def _record(out: Path, rid: str) -> dict:
    return json.loads((out / "runs" / f"{rid}.json").read_text())


def test_folder_mode_writes_robustness_into_each_record(run_dir, models, capsys):
    assert main(["robustness", str(run_dir), *FAST, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [s["status"][:9] for s in summary] == ["evaluated", "evaluated", "skipped ("]
    bp = _record(run_dir, "digits-mlp__bp__aaaa__s0")["metrics"]["robustness"]
    ulr = _record(run_dir, "digits-mlp__ulr__bbbb__s0")["metrics"]["robustness"]
    assert _record(run_dir, "digits-mlp__ulr__cccc__s1")["metrics"]["robustness"] is None
    # the folder's BP run is every run's transfer surrogate
    assert ulr["settings"]["transfer_source"] == "digits-mlp__bp__aaaa__s0"
    assert bp["settings"]["transfer_source"] == "digits-mlp__bp__aaaa__s0"
    assert bp["transfer_pgd"]["0.0"] == bp["clean"] == bp["pgd_linf"]["0.0"]
    assert ulr["transfer_pgd"]["0.1"] >= ulr["pgd_linf"]["0.1"]
    assert set(ulr["corruptions"]) == {"gaussian_noise", "impulse_noise", "contrast", "gaussian_blur"}
    assert bp["subset_size"] == 120 and bp["clean"] > 0.8
    assert list(bp["pgd_l2"]) == ["0.5"] and bp["settings"]["pgd_linf"]["steps"] == 3
    assert not [p for p in os.listdir(run_dir / "runs") if not p.endswith(".json")]  # no temp files left
    # a second call skips what is done; --force recomputes the same numbers
    before = (run_dir / "runs" / "digits-mlp__bp__aaaa__s0.json").read_text()
    assert main(["robustness", str(run_dir), *FAST]) == 0
    assert "skipped (has robustness" in capsys.readouterr().out
    assert main(["robustness", str(run_dir), *FAST, "--force"]) == 0
    assert (run_dir / "runs" / "digits-mlp__bp__aaaa__s0.json").read_text() == before


def test_explicit_surrogate_serves_its_task_only(run_dir, capsys):
    from lrbench.tasks import get_task

    torch.manual_seed(0)
    _write_run(run_dir, "digits-cnn__bp__dddd__s0", "bp", 0, get_task("digits-cnn").build_model(), task="digits-cnn")
    argv = ["robustness", str(run_dir), *FAST, "--no-corruptions", "--surrogate", "digits-mlp__ulr__bbbb__s0"]
    assert main(argv) == 0
    source = {rid: _record(run_dir, rid)["metrics"]["robustness"]["settings"]["transfer_source"]
              for rid in ("digits-cnn__bp__dddd__s0", "digits-mlp__bp__aaaa__s0", "digits-mlp__ulr__bbbb__s0")}
    assert source == {"digits-cnn__bp__dddd__s0": "digits-cnn__bp__dddd__s0",
                      "digits-mlp__bp__aaaa__s0": "digits-mlp__ulr__bbbb__s0",
                      "digits-mlp__ulr__bbbb__s0": "digits-mlp__ulr__bbbb__s0"}


def test_single_checkpoint_prints_and_writes_nothing(run_dir, capsys):
    ckpt = run_dir / "checkpoints" / "digits-mlp__ulr__bbbb__s0.pt"
    rc = main(["robustness", str(ckpt), *FAST, "--surrogate", "digits-mlp__bp__aaaa__s0", "--no-corruptions",
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == TASK and out["robustness"]["corruptions"] == {}
    assert out["robustness"]["fgsm"]["0.0"] == out["robustness"]["clean"]
    assert out["robustness"]["settings"]["transfer_source"] == "digits-mlp__bp__aaaa__s0"
    assert _record(run_dir, "digits-mlp__ulr__bbbb__s0")["metrics"]["robustness"] is None
    # text output; a bare checkpoint (no record beside it) needs --task
    bare = run_dir / "model.pt"
    torch.save(torch.load(run_dir / "checkpoints" / "digits-mlp__bp__aaaa__s0.pt"), bare)
    assert main(["robustness", str(bare), *FAST, "--task", TASK]) == 0
    text = capsys.readouterr().out
    assert "pgd_linf" in text and "gaussian_blur" in text and "transfer" not in text.split("\n", 1)[1]


@pytest.mark.parametrize("argv, message", [
    (["robustness", "/nonexistent/place"], "no such results folder or checkpoint"),
    (["robustness", "{dir}/model.pt", "--subset", "10"], "give --task"),
    (["robustness", "{dir}/model.pt", "--task", "digits-cnn"], "does not fit"),
    (["robustness", "{dir}/model.pt", "--task", "nope"], "unknown task"),
    (["robustness", "{dir}", "--subset", "0"], "--subset must be >= 1"),
    (["robustness", "{dir}/runs"], "not a results folder"),
    (["robustness", "{dir}", "--surrogate", "missing-run"], "neither a checkpoint"),
    (["robustness", "{dir}/junk.pt", "--task", TASK], "cannot read checkpoint"),
])
def test_bad_input_is_one_line_exit_2(run_dir, models, capsys, argv, message):
    torch.save(models["bp"].state_dict(), run_dir / "model.pt")
    (run_dir / "junk.pt").write_text("not a checkpoint")
    argv = [a.replace("{dir}", str(run_dir)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("lrbench: error:")


def test_runner_fills_metrics_robustness_with_the_results_shape(tmp_path):
    """End to end: ``lrbench run`` with ``robustness`` set calls robustness_metrics after training and the
    record carries the docs/RESULTS.md shape; ``transfer_source`` names an earlier run of the folder."""
    out = tmp_path / "out"
    common = ["--out", str(out), "--no-progress", "max_epochs=2", "grad_quality_every=null"]
    suite = tmp_path / "bp.yaml"
    suite.write_text("grid: {task: [digits-mlp], estimator: [bp]}\nseeds: [1]\n")
    assert main(["run", str(suite), *common]) == 0
    (surrogate_id,) = [p.stem for p in (out / "runs").glob("*.json")]
    suite.write_text("grid: {task: [digits-mlp], estimator: [bp]}\nseeds: [0]\n")
    assert main(["run", str(suite), *common, "robustness.subset_size=100", "robustness.pgd_linf.steps=3",
                 "robustness.pgd_l2.steps=3", f"robustness.transfer_source={surrogate_id}"]) == 0
    (record_path,) = [p for p in (out / "runs").glob("*.json") if p.stem != surrogate_id]
    record = json.loads(record_path.read_text())
    assert record["status"] == "completed", record["message"]
    rob = record["metrics"]["robustness"]
    assert set(rob) == {"subset_size", "subset_seed", "settings", "clean", "fgsm", "pgd_linf", "pgd_l2",
                        "transfer_fgsm", "transfer_pgd", "corruptions"}
    assert rob["subset_size"] == 100 and rob["settings"]["transfer_source"] == surrogate_id
    assert list(rob["fgsm"]) == ["0.05", "0.1", "0.13", "0.2", "0.3"] == list(rob["transfer_pgd"])
    assert {k: len(v) for k, v in rob["corruptions"].items()} == \
        {"gaussian_noise": 5, "impulse_noise": 5, "contrast": 5, "gaussian_blur": 5}
    assert rob["settings"]["pgd_linf"] == {"steps": 3, "step_size_factor": 2.5, "random_start": True}
    assert all(0 <= a <= 1 for a in rob["pgd_linf"].values())
