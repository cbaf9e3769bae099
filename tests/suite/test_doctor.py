"""lrbench doctor: no CUDA device -> one line, exit 2; the CPU versions of the checks run and pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lrbench.suite.cli.doctor import CHECKS
from lrbench.suite.cli.main import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_doctor_cuda_without_a_gpu_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--device", "cuda", "--out", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lrbench: error: no CUDA device is present")
    assert not (tmp_path / "d.json").exists()


def test_doctor_unknown_check_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--device", "cpu", "--skip", "nonsense"]) == 2
    assert "valid checks are suite_jobs, memory, bench" in capsys.readouterr().err


def test_doctor_cpu_fast_checks_pass_and_write_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--device", "cpu", "--out", str(out), "--skip", "suite_jobs", "--skip", "bench"]) == 0
    summary = json.loads(out.read_text())
    assert summary["ok"] and summary["device"] == "cpu"
    assert set(summary["checks"]) == set(CHECKS) - {"suite_jobs", "bench"}
    checks = summary["checks"]
    assert checks["alr_streams"]["max_relative_difference"] <= 1e-5
    assert checks["xconv_cudnn"]["cosine_mean_xconv_to_bp"] >= 0.5
    assert min(checks["attacks_cudnn"]["prediction_agreement_with_cpu"].values()) == 1.0  # same device: identical
    assert checks["memory"]["ok"] is None and checks["robustness"]["clean"] >= 0.5


@pytest.mark.slow
def test_doctor_cpu_runs_every_check(tmp_path: Path) -> None:
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["checks"]["suite_jobs"]["completed"] == 16
    # --jobs 2: this process is worker 0 and one worker is spawned; on a quiet machine worker 0 can finish
    # the 16 tiny runs before the spawned worker has imported torch, so 1 or 2 processes have run them
    # (both taking runs is what tests/suite/test_cooperating_runs.py asserts).
    assert summary["checks"]["suite_jobs"]["worker_processes"] in (1, 2)
    assert summary["checks"]["bench"]["ok"]
