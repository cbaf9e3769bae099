"""The cost of a training run in four units, cumulative along its history, and the budget that stops it.

Units (``COST_UNITS``), counted over the *timed training steps* only (``estimator.estimate`` plus the
optimizer and scheduler step; evaluation, logging and the gradient-quality reference are outside, as for
the training clock of :mod:`suite.metrics.throughput`):

* ``forward_passes`` = Σ_steps ``logs["forward_passes"]`` of that step's ``estimate`` call: forward
  passes at batch size B *only* — a backward pass or a local VJP is not a forward and is not counted
  (BP = 1 per step, ULR/ALR = 1 clean + the noisy passes weighted by the share of the network they run,
  ES = K + 1, SPSA = 2n + 1, FG = n jvp passes, XConv = 1). docs/RESULTS.md has the table.
* ``flops`` = steps × ``flops_per_step``, the FLOPs ``torch.utils.flop_counter.FlopCounterMode`` counts
  over one whole training step measured before training (forward copies, backward or local VJPs, sketch
  products, optimizer kernels it registers): everything an estimator computes in matmul/conv/attention.
* ``cpu_seconds`` = Σ ``time.process_time()`` deltas over the timed segments (all threads of this process).
* ``wall_seconds`` = Σ ``time.perf_counter()`` deltas over the same segments (= ``history[].wall_time``).

``CostMeter`` accumulates them; ``BudgetStop`` is the Lightning callback that ends training when the
run's ``budget`` (``{"unit": u, "amount": a}``) is spent: after the first step with spent(u) ≥ a·(1 − 1e-9)
(the tolerance absorbs float summation order, so a budget of exactly T steps' cost stops after T steps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl

from lrbench.schema import COST_UNITS

BUDGET_TOLERANCE = 1e-9


@dataclass
class CostMeter:
    """Cumulative cost of the steps taken so far, in every unit of ``COST_UNITS``."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COST_UNITS, 0.0))
    steps: int = 0

    def add_step(self, *, forward_passes: float, flops: float | None, cpu_seconds: float, wall_seconds: float) -> None:
        """Charge one training step (``flops`` None when it could not be measured: the total stays None)."""
        self.steps += 1
        self.totals["forward_passes"] += float(forward_passes)
        self.totals["flops"] = None if flops is None or self.totals["flops"] is None else self.totals["flops"] + flops
        self.totals["cpu_seconds"] += float(cpu_seconds)
        self.totals["wall_seconds"] += float(wall_seconds)

    def spent(self, unit: str) -> float | None:
        return self.totals[unit]

    def snapshot(self) -> dict[str, float | None]:
        """``{forward_passes, flops, cpu_seconds, wall_seconds}`` now (the record's ``metrics.cost``)."""
        return dict(self.totals)


class BudgetStop(pl.Callback):
    """Sets ``trainer.should_stop`` after the training step that spends the budget (module docstring)."""

    def __init__(self, meter: CostMeter, unit: str, amount: float) -> None:
        self.meter, self.unit, self.amount = meter, unit, float(amount)
        self.exhausted = False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        spent = self.meter.spent(self.unit)
        if spent is not None and spent >= self.amount * (1.0 - BUDGET_TOLERANCE):
            self.exhausted = True
            trainer.should_stop = True

    def result(self) -> dict[str, Any]:
        """The record's ``metrics.budget``: unit, amount, what was spent, and whether the budget ended the run."""
        return {"unit": self.unit, "amount": self.amount, "spent": self.meter.spent(self.unit),
                "exhausted": self.exhausted}


def machine_load() -> dict[str, Any]:
    """``os.getloadavg()`` (1, 5, 15 min) and the CPU count: how busy the machine was (wall time is
    comparable between runs only on a quiet machine). None where the OS has no load average."""
    try:
        load = [round(v, 3) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"load_average": load, "cpu_count": os.cpu_count()}
