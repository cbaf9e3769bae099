"""``lrbench bench``: structural facts of a tiny run (keys, finite positive ratios, ALR's 1 bit per noise
element) and the exact quantities the bench's tools compute — never timing thresholds."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lrbench.estimators import ESTIMATORS, get_estimator
from lrbench.estimators.registry import _load_builtin_estimators
from lrbench.suite.bench import BenchConfig, run_bench
from lrbench.suite.bench.floor import ForwardPlan, lr_plan, run_plan
from lrbench.suite.bench.headlines import MEASUREMENTS, TARGETS, check_targets
from lrbench.suite.bench.models import make_net, parametric_blocks, per_row_cross_entropy
from lrbench.suite.bench.noise_bits import count_noise_elements
from lrbench.suite.bench.sizes import NetSize, lr_options
from lrbench.suite.bench.timing import Timings, back_to_back, interleaved
from lrbench.suite.cli.main import main

_load_builtin_estimators()
needs_lr = pytest.mark.skipif(not {"ulr", "alr", "xconv"} <= set(ESTIMATORS),
                              reason="ulr/alr/xconv estimators not installed yet")

TINY = BenchConfig.quick_config(
    rounds=1, speed_mlp=NetSize(16, 4, 4), speed_cnn=NetSize(4, 2, 4), copies=4, mem_depths=(2, 8),
    mem_mlp=NetSize(16, 32, 4), mem_cnn=NetSize(4, 8, 4), mem_copies=2, xconv_batch=2, xconv_image=32,
    harness_steps=4, harness_rounds=1, parallel_batch=2, parallel_copies=2)


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    t = Timings({"a": [2.0, 9.0, 4.0], "b": [1.0, 3.0, 4.0]})
    assert t.ratio("a", "b") == 2.0          # ratios 2, 3, 1 -> median 2
    assert t.median("a") == 4.0


def test_interleaved_runs_every_callable_once_per_round() -> None:
    calls: list[str] = []
    t = interleaved({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")}, rounds=3, warmup=1)
    assert calls == ["x", "y", "x", "y", "y", "x", "x", "y"]   # warm-up, then rotating order
    assert all(len(v) == 3 and min(v) >= 0 for v in t.times.values())


def test_back_to_back_pairs_alternate_their_order() -> None:
    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    ratios, times = back_to_back(fns, {"a/b": ("a", "b"), "c/a": ("c", "a")}, rounds=2, warmup=0)
    assert calls == ["a", "b", "c", "a", "a", "c", "b", "a"]   # round 1 rotated and b-first
    assert set(ratios) == {"a/b", "c/a"} and len(times.times["a"]) == 4


def test_forward_plans_count_the_rows_and_blocks_each_injection_runs() -> None:
    net = make_net("mlp", 3, width=8, batch=4, image=2)
    assert parametric_blocks(net.model) == [0, 1, 2]
    n, b, k = 3, 4, 5
    shared = lr_plan(net.model, k, "layerwise", prefix_sharing=True)
    naive = lr_plan(net.model, k, "layerwise", prefix_sharing=False)
    assert shared == ForwardPlan(((0, k), (1, k), (2, k)))
    assert shared.row_blocks(net.model, b) == b * n + b * k * (3 + 2 + 1)
    assert naive.row_blocks(net.model, b) == b * n + b * k * 3 * n
    assert lr_plan(net.model, k, "global").row_blocks(net.model, b) == b * n + b * k * n
    clean = per_row_cross_entropy(net.model(net.inputs), net.targets).sum().item()
    # with no noise every copy of a sample has the clean loss: the floor's total is (1 + Σ K_b)·clean
    for share_head in (False, True):
        assert run_plan(net.model, per_row_cross_entropy, net.inputs, net.targets, shared, chunk=7,
                        share_head=share_head) == pytest.approx(clean * (1 + 3 * k), rel=1e-5)


def test_allocator_check_reports_the_largest_gap() -> None:
    from lrbench.suite.bench.lr_memory import allocator_check

    assert allocator_check([]) is None                     # CPU: nothing to compare
    got = allocator_check([(100, 104), (200, 230)])
    assert got is not None and got["max_relative_gap"] == pytest.approx(0.15) and got["within"] is False


def test_targets_are_checked_in_their_direction() -> None:
    got = check_targets({"ulr_over_floor": 1.2, "prefix_speedup": 1.7, "alr_noise_bits_per_element": 1.0,
                         "lr_mem_over_bp": None, "xconv_net_mem_saving": float("nan"), "harness_overhead": 1.0})
    assert set(got) == set(TARGETS)
    assert [got[k]["met"] for k in ("ulr_over_floor", "prefix_speedup", "alr_noise_bits_per_element",
                                    "lr_mem_over_bp", "xconv_net_mem_saving", "harness_overhead")] == \
        [False, True, True, None, None, True]


@needs_lr
@pytest.mark.parametrize("injection", ["global", "layerwise"])
def test_counted_noise_elements_match_the_engine_log(injection: str) -> None:
    net = make_net("mlp", 3, width=8, batch=4, image=2)
    opts = lr_options(TINY, injection=injection, copies=3)
    _, logs = get_estimator("alr", **opts).estimate(net.model, per_row_cross_entropy, net.inputs, net.targets)
    assert count_noise_elements(net.model, net.inputs, 3, injection) == logs["noise_elements"]


@needs_lr
def test_tiny_bench_reports_every_ratio_finite_and_positive() -> None:
    threads = torch.get_num_threads()
    record = run_bench(TINY)
    assert torch.get_num_threads() == threads            # the bench restores the thread count
    assert record["missing"] == []
    ratios = record["ratios"]
    assert set(TARGETS) <= set(ratios)
    for name, value in ratios.items():
        assert value is not None and math.isfinite(value) and value > 0, name
    assert ratios["alr_noise_bits_per_element"] == 1.0
    assert record["targets"]["alr_noise_bits_per_element"]["met"] is True
    for family in ("mlp", "cnn"):
        assert set(record["details"]["speed"][family]["ratios"]) == {
            "ulr_over_floor", "ulr_over_block_floor", "alr_over_floor", "global_over_floor", "prefix_speedup", "prefix_speedup_of_floors",
            "bp_step_over_forward"}
        parts = record["details"]["speed"][family]["ulr_breakdown_ms"]
        assert set(parts) == {"step", "forward_floor", "noise_draw", "local_vjps", "rest"}
        assert parts["noise_draw"] > 0 and parts["local_vjps"] > 0
    mem = record["details"]["lr_memory"]
    assert {d for est in ("ulr", "alr") for fam in ("mlp", "cnn") for d in mem["ratios"][est][fam]} == {2, 8}
    assert mem["copies_invariance"] == pytest.approx(1.0, abs=0.05)   # chunk bounds memory, not copies
    assert record["config"]["threads"] == 1 and record["machine"]["cpu_count"] >= 1
    parallel = record["details"]["alr_parallel"]
    assert parallel["modules"] == 14 and len(parallel["module_seconds"]) == 14   # mnist-vgg8: 14 parametric modules
    assert 1.0 <= parallel["ideal_phase_speedup"] <= parallel["workers"]
    assert parallel["alr_over_ulr_memory"] < 1.0          # 1-bit signs instead of stored float noise
    json.dumps(record)                                     # the record is plain JSON


def test_cli_rejects_bad_device_and_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--device", "tpu"]) == 2
    assert "--device must be cpu or cuda" in capsys.readouterr().err
    assert main(["bench", "--skip", "everything"]) == 2
    assert "valid measurements are" in capsys.readouterr().err


def test_cli_json_with_every_measurement_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    skips = [a for m in MEASUREMENTS for a in ("--skip", m)]
    assert main(["bench", "--quick", "--json", *skips]) == 0
    record = json.loads(capsys.readouterr().out)
    assert all(v is None for v in record["ratios"].values())
    assert all(t["met"] is None for t in record["targets"].values())
