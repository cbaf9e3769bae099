"""Time-to-target: the first evaluation at which the validation accuracy reaches the task's target.

``seconds`` is the training clock at that evaluation (timed training seconds only, evaluation excluded:
see :mod:`suite.training.metrics.throughput`) and ``steps`` the optimizer steps taken; ``forward_passes``,
``flops`` and ``cpu_seconds`` the run's cumulative cost then (:mod:`suite.training.metrics.cost`); all null when
never reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COST_AT_TARGET = ("forward_passes", "flops", "cpu_seconds")  # wall seconds are ``seconds``


class TimeToTarget:
    def __init__(self, target: float | None, metric: str = "val_accuracy") -> None:
        self.target = target
        self.metric = metric
        self.seconds: float | None = None
        self.steps: int | None = None
        self.cost: dict[str, float | None] = dict.fromkeys(COST_AT_TARGET)

    def update(self, value: float, seconds: float, steps: int, cost: Mapping[str, float | None] | None = None) -> None:
        """Record an evaluation; the first one with ``value >= target`` fixes the result."""
        if self.target is None or self.seconds is not None:
            return
        if value >= self.target:
            self.seconds, self.steps = float(seconds), int(steps)
            self.cost = {unit: (cost or {}).get(unit) for unit in COST_AT_TARGET}

    def result(self) -> dict[str, Any]:
        return {"target": self.target, "metric": self.metric, "seconds": self.seconds, "steps": self.steps,
                **self.cost}
