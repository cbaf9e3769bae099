"""Threads chosen, not inherited: the budget per worker, the per-run choice, --jobs defaults, the record."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrbench.schema import run_id
from lrbench.suite.cli.main import main
from lrbench.suite.cli.suite_files import expand_suite
from lrbench.suite.errors import UserError
from lrbench.suite.training import threads
from lrbench.suite.training.runner import run_one


@pytest.mark.parametrize(("cores", "jobs", "budget"), [(2, 1, 2), (2, 2, 1), (16, 3, 5), (2, 8, 1), (1, 1, 1)])
def test_budget_divides_the_cores_among_the_workers(cores: int, jobs: int, budget: int) -> None:
    assert threads.thread_budget(jobs, cores=cores) == budget


def test_auto_gives_small_steps_one_thread_and_large_steps_the_budget() -> None:
    assert threads.intra_op_threads("auto", 8, 3e8) == 1            # a digits step (0.03-0.4 GFLOP)
    assert threads.intra_op_threads("auto", 8, 1e10) == 8           # cifar10-convnet BP
    assert threads.intra_op_threads("auto", 8, None) == 8           # unknown cost: the budget
    assert threads.intra_op_threads(3, 8, 1e3) == 3                 # the user's number as given


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True])
def test_bad_threads_value_is_one_line(bad: object) -> None:
    with pytest.raises(UserError, match="'threads' must be 'auto' or an integer >= 1"):
        expand_suite({"runs": [{"task": "digits-mlp"}]}, {"threads": bad, "accelerator": "cpu"})


def test_threads_flag_bad_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "quick", "--threads", "0", "--list"])
    assert exit_info.value.code == 2
    assert "argument --threads: must be 'auto' or an integer >= 1" in capsys.readouterr().err


def test_threads_do_not_change_the_run_id() -> None:
    [a] = expand_suite({"runs": [{"task": "digits-mlp"}]}, {"accelerator": "cpu"})
    [b] = expand_suite({"runs": [{"task": "digits-mlp"}]}, {"accelerator": "cpu", "threads": 2})
    assert a["threads"] == "auto" and b["threads"] == 2 and run_id(a) == run_id(b)


def test_default_jobs_is_cores_bounded_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    monkeypatch.setattr(threads, "available_memory_bytes", lambda: int(3.5e9))  # room for 3 run processes
    assert threads.default_jobs("cpu") == 3
    monkeypatch.setattr(threads, "available_memory_bytes", lambda: int(64e9))
    assert threads.default_jobs("cpu") == 16
    configs = [{"accelerator": "cpu", "devices": 1}] * 5
    assert threads.resolve_jobs(None, configs) == 5  # never more workers than runs
    assert threads.resolve_jobs(2, configs) == 2


def test_ddp_with_jobs_is_refused_in_one_line() -> None:
    configs = [{"accelerator": "cpu", "devices": 2}]
    with pytest.raises(UserError, match="--jobs 2 with devices=2: a DDP run already uses its devices"):
        threads.resolve_jobs(2, configs)
    assert threads.resolve_jobs(None, configs) == 1
    with pytest.raises(UserError, match="--jobs must be an integer >= 1"):
        threads.resolve_jobs(0, [{"accelerator": "cpu", "devices": 1}])


def test_record_says_which_thread_counts_the_run_used(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        [tiny] = expand_suite({"runs": [{"task": "digits-mlp", "max_steps": 2, "max_epochs": None}]},
                              {"accelerator": "cpu", "progress": False})
        record = run_one(tiny, tmp_path)
        used = record["hardware"]["threads"]
        assert used["intra_op"] == 1 and used["cores_available"] == threads.available_cores()
        assert used["inter_op"] >= 1 and record["hardware"]["worker"]["pid"] > 0
        [pinned] = expand_suite({"runs": [{"task": "digits-mlp", "max_steps": 2, "max_epochs": None}]},
                                {"accelerator": "cpu", "progress": False, "threads": 2})
        assert run_one(pinned, tmp_path)["hardware"]["threads"]["intra_op"] == 2
    finally:
        torch.set_num_threads(before)


def test_gpu_workers_get_one_device_each_round_robin_over_the_visible_ones() -> None:
    from lrbench.suite.training.pool import worker_device

    assert [worker_device(i, 2, visible="") for i in range(3)] == ["0", "1", "0"]
    assert [worker_device(i, 2, visible="3,5") for i in range(3)] == ["3", "5", "3"]  # a job's own GPUs
