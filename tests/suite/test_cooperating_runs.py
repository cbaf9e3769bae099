"""Several workers on one results folder: two ``lrbench run`` processes split a suite, every run exactly
once; kill -9 of one mid-run, the other takes its claim over; a restart finds everything done; ``--jobs``
workers; the submitit local executor path end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrbench.suite.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SUITE = ("defaults: {task: digits-mlp, estimator: bp, max_steps: 6, max_epochs: null, train_subset: 300,\n"
         "           accelerator: cpu, grad_quality_every: null}\n"
         "grid: {lr: [0.001, 0.002, 0.003, 0.004]}\n")


def _suite(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def _command(suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lrbench", "run", str(suite), "--out", str(out), "--no-progress", *extra]


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("OMP_NUM_THREADS", None)  # the default threads must be the right ones without it
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ran_now(stdout: str) -> int:
    match = re.search(r"(\d+) run now", stdout)
    assert match, stdout
    return int(match.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _claim_pids(out: Path) -> set[int]:
    pids = set()
    for path in (out / "claims").glob("*.json") if (out / "claims").exists() else []:
        try:
            pids.add(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return pids


def _records(out: Path) -> list[dict]:
    files = sorted((out / "runs").iterdir())
    assert all(p.suffix == ".json" and not p.name.startswith(".") for p in files), files  # no temporaries
    return [json.loads(p.read_text()) for p in files]


def _every_run_once_completed(out: Path, n: int = 4) -> list[dict]:
    records = _records(out)
    assert len(records) == n and len({r["run_id"] for r in records}) == n
    assert all(r["status"] == "completed" for r in records), [r["message"] for r in records]
    assert not list((out / "claims").glob("*.json"))  # every claim released
    return records


@pytest.mark.slow
def test_two_processes_split_a_suite_every_run_exactly_once(tmp_path: Path) -> None:
    suite, out = _suite(tmp_path), tmp_path / "out"
    procs = [_start(_command(suite, out, "--jobs", "1")) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    ran = [_ran_now(stdout) for stdout, _ in outputs]
    assert sum(ran) == 4  # a run trained twice would count twice
    records = _every_run_once_completed(out)
    pids = {p.pid for p in procs}
    assert {r["hardware"]["worker"]["pid"] for r in records} <= pids
    for r in records:  # one training per run: its CSV log holds the 6 steps once
        assert len(r["metrics"]["history"]) == 1 and r["metrics"]["history"][0]["step"] == 6


@pytest.mark.slow
def test_kill_9_of_one_worker_mid_run_the_other_takes_over_and_a_restart_finds_all_done(tmp_path: Path) -> None:
    suite, out = _suite(tmp_path, SUITE.replace("max_steps: 6", "max_steps: 40")), tmp_path / "out"
    victim, survivor = _start(_command(suite, out, "--jobs", "1")), _start(_command(suite, out, "--jobs", "1"))
    deadline = time.time() + 120
    in_flight: list[str] = []
    while time.time() < deadline and not in_flight and victim.poll() is None:  # the victim trains a run
        for path in (out / "claims").glob("*.json") if (out / "claims").exists() else []:
            try:
                claim = json.loads(path.read_text())
            except ValueError:
                continue
            if claim.get("pid") == victim.pid and (out / "logs" / path.stem / "metrics.csv").exists():
                in_flight.append(path.stem)
        if not in_flight:
            time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert in_flight, "the victim finished before it could be killed mid-run"
    assert not (out / "runs" / f"{in_flight[0]}.json").exists()  # killed before its record
    stdout, stderr = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, stderr[-2000:]
    records = _every_run_once_completed(out)
    by_pid = {r["run_id"]: r["hardware"]["worker"]["pid"] for r in records}
    assert by_pid[in_flight[0]] == survivor.pid  # the killed run was taken over, not lost
    assert _ran_now(stdout) == sum(pid == survivor.pid for pid in by_pid.values())
    assert sum(pid == victim.pid for pid in by_pid.values()) + _ran_now(stdout) == 4
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    restart = _start(_command(suite, out))
    stdout, stderr = restart.communicate(timeout=300)
    assert restart.returncode == 0, stderr[-2000:]
    assert "0 run now, 4 already done" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == mtimes


@pytest.mark.slow
def test_kill_9_of_a_jobs_parent_takes_its_workers_along_and_a_restart_finishes(tmp_path: Path) -> None:
    # runs long enough (ULR, ~10 s each) that the parent (worker 0) is still busy when its spawned worker has
    # imported torch and Lightning (8-20 s): with BP runs of 400 steps a quiet machine let the parent finish
    # the whole suite first, and no spawned worker ever held a claim
    long_runs = SUITE.replace("max_steps: 6", "max_steps: 1500").replace("estimator: bp", "estimator: ulr")
    suite, out = _suite(tmp_path, long_runs), tmp_path / "out"
    parent = _start(_command(suite, out, "--jobs", "2"))
    deadline = time.time() + 120  # both workers hold a claim: this process (worker 0) and its spawned one
    while time.time() < deadline and parent.poll() is None and len(_claim_pids(out)) < 2:
        time.sleep(0.01)
    worker_pids = _claim_pids(out) - {parent.pid}
    parent.send_signal(signal.SIGKILL)
    parent.communicate()
    assert worker_pids, "no spawned worker held a claim"
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in worker_pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in worker_pids)  # orphaned workers stop (they watch their parent)
    restart = _start(_command(suite, out, "--jobs", "2"))
    stdout, stderr = restart.communicate(timeout=300)
    assert restart.returncode == 0, stderr[-2000:]
    records = _every_run_once_completed(out)
    assert {r["hardware"]["worker"]["pid"] for r in records} - {parent.pid} - worker_pids  # the restart ran some
    assert all(r["hardware"]["threads"]["intra_op"] == 1 for r in records)


@pytest.mark.slow
def test_submitit_local_executor_runs_a_small_suite_end_to_end(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    suite, out = _suite(tmp_path, SUITE.replace("[0.001, 0.002, 0.003, 0.004]", "[0.001, 0.002, 0.003]")), tmp_path / "out"
    code = main(["run", str(suite), "--out", str(out), "--launcher", "submitit-local", "--jobs", "2",
                 "--slurm", "timeout_min=10"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "submitted 2 array task(s) (local)" in captured.out
    assert "3 runs: 3 run now, 0 already done, 0 failed" in captured.out
    records = _every_run_once_completed(out, n=3)
    assert len(list((out / "submitit").rglob("*_result.pkl"))) == 2  # both array tasks ran and returned
    assert {r["hardware"]["worker"]["pid"] for r in records} != {os.getpid()}  # trained in the tasks


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="this machine has SLURM")
def test_launcher_slurm_without_sbatch_and_misplaced_options_are_one_line(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite(tmp_path)
    assert main(["run", str(suite), "--out", str(tmp_path / "o"), "--launcher", "slurm"]) == 2
    assert "--launcher slurm: no 'sbatch' on PATH" in capsys.readouterr().err
    assert main(["run", str(suite), "--out", str(tmp_path / "o"), "--slurm", "partition=x"]) == 2
    assert "--slurm/--no-wait apply to --launcher slurm" in capsys.readouterr().err
    assert main(["run", str(suite), "--out", str(tmp_path / "o"), "--claim-timeout", "0"]) == 2
    assert "--claim-timeout must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()  # nothing ran
