"""Unit checks of the run metrics: training clock, time-to-target, gradient quality vs BP."""

from __future__ import annotations

import math

import pytest
import torch

from lrbench.suite.training.metrics.gradient_quality import GradientQuality, compare
from lrbench.suite.training.metrics.throughput import StepClock
from lrbench.suite.training.metrics.time_to_target import TimeToTarget


def test_step_clock_excludes_warmup_from_rates() -> None:
    clock = StepClock()
    clock.durations = [5.0] * 5 + [0.5] * 10
    clock.samples = [32] * 15
    summary = clock.summary(forward_passes_per_step=3.0, flops_per_step=1e6)
    assert summary["warmup_steps"] == 5 and summary["timed_steps"] == 10
    assert summary["step_time_seconds"] == pytest.approx(0.5)
    assert summary["samples_per_second"] == pytest.approx(64.0)
    assert clock.elapsed() == pytest.approx(30.0)
    assert (summary["forward_passes_per_step"], summary["flops_per_step"]) == (3.0, 1e6)
    short = StepClock(durations=[1.0, 2.0, 3.0], samples=[8, 8, 8]).summary(None, None)
    assert short["warmup_steps"] == 1 and short["step_time_seconds"] == pytest.approx(2.5)


def test_time_to_target_keeps_the_first_crossing() -> None:
    ttt = TimeToTarget(0.9)
    for value, seconds, steps in ((0.5, 1.0, 10), (0.91, 2.0, 20), (0.95, 3.0, 30)):
        ttt.update(value, seconds, steps)
    assert ttt.result() == {"target": 0.9, "metric": "val_accuracy", "seconds": 2.0, "steps": 20}
    assert TimeToTarget(0.99).result()["seconds"] is None


def test_compare_formulas() -> None:
    g = torch.tensor([1.0, 0.0], dtype=torch.float64)
    e = torch.tensor([1.0, 1.0], dtype=torch.float64)
    out = compare(e, g)
    assert out["cosine"] == pytest.approx(1 / math.sqrt(2))
    assert out["relative_error"] == pytest.approx(1.0)
    assert out["norm_ratio"] == pytest.approx(math.sqrt(2))


def test_measure_restores_grads_buffers_and_rng() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5),
                                torch.nn.Linear(8, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, target, reduction="none")

    for p in model.parameters():
        p.grad = torch.ones_like(p)  # stands for an estimate
    kept = [p.grad for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    quality = GradientQuality(every=2)
    point = quality.measure(model, loss_fn, x, y, step=4)
    assert all(p.grad is g for p, g in zip(model.parameters(), kept, strict=True))
    assert all(torch.equal(b, s) for b, s in zip(model.buffers(), buffers, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)
    assert point["step"] == 4 and -1.0 <= point["cosine"] <= 1.0
    assert quality.due(0) and quality.due(4) and not quality.due(3) and not GradientQuality(None).due(0)
    assert quality.summary()["mean_cosine"] == point["cosine"]
