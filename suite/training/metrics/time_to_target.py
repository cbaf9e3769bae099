"""Time-to-target: the first evaluation at which the validation accuracy reaches the task's target.

``seconds`` is the training clock at that evaluation (timed training seconds only, evaluation excluded:
see :mod:`suite.training.metrics.throughput`) and ``steps`` the optimizer steps taken; both null when never reached.
"""

from __future__ import annotations

from typing import Any


class TimeToTarget:
    def __init__(self, target: float | None, metric: str = "val_accuracy") -> None:
        self.target = target
        self.metric = metric
        self.seconds: float | None = None
        self.steps: int | None = None

    def update(self, value: float, seconds: float, steps: int) -> None:
        """Record an evaluation; the first one with ``value >= target`` fixes the result."""
        if self.target is None or self.seconds is not None:
            return
        if value >= self.target:
            self.seconds, self.steps = float(seconds), int(steps)

    def result(self) -> dict[str, Any]:
        return {"target": self.target, "metric": self.metric, "seconds": self.seconds, "steps": self.steps}
