"""The training clock and throughput.

Only the *training step* is timed: ``estimator.estimate(...)`` plus ``optimizer.step()`` (and the lr
scheduler step), with the device synchronised at both ends of every timed segment. Data loading,
logging, evaluation and the gradient-quality reference (BP) are outside the segments. Memory and FLOPs
are probed on a copy of the model before training (``suite.training.runner.measure_step_cost``), so no training
step is slowed down by instrumentation.

* ``elapsed()`` (the clock of ``history[].wall_time`` and time-to-target) = Σ t_s over the steps so far
* ``warmup_steps`` = min(5, ⌊n/2⌋) first steps, excluded from the two rates below
* ``step_time_seconds``  = Σ_{s > warm-up} t_s / n_timed
* ``samples_per_second`` = Σ_{s > warm-up} B_s / Σ_{s > warm-up} t_s   (B_s = this process's batch)
* ``forward_passes_per_step`` = ``estimator.forward_passes_per_step(model, B)``;
  ``flops_per_step`` = FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` over one whole
  training step (every forward copy, local VJP or backward, and the optimizer update kernels it
  registers: matmul, convolution, attention), so an estimator is charged for the work it really does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

MAX_WARMUP_STEPS = 5


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepClock:
    """Accumulates timed segments per training step (module docstring for the definitions)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    durations: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    _started: float | None = None
    _current: float = 0.0

    def begin_step(self) -> None:
        self._current = 0.0

    def start(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def stop(self) -> None:
        synchronize(self.device)
        assert self._started is not None, "StepClock.stop() without start()"
        self._current += time.perf_counter() - self._started
        self._started = None

    def end_step(self, batch_size: int) -> None:
        self.durations.append(self._current)
        self.samples.append(int(batch_size))

    @property
    def steps(self) -> int:
        return len(self.durations)

    def elapsed(self) -> float:
        """Cumulative timed training seconds so far."""
        return float(sum(self.durations))

    def summary(self, forward_passes_per_step: float | None, flops_per_step: float | None) -> dict[str, Any]:
        """The RESULTS.md ``throughput`` object."""
        n = self.steps
        warmup = min(MAX_WARMUP_STEPS, n // 2)
        seconds = sum(self.durations[warmup:])
        samples = sum(self.samples[warmup:])
        timed = n - warmup
        return {
            "samples_per_second": samples / seconds if timed and seconds > 0 else None,
            "step_time_seconds": seconds / timed if timed else None,
            "warmup_steps": warmup,
            "timed_steps": timed,
            "forward_passes_per_step": forward_passes_per_step,
            "flops_per_step": flops_per_step,
        }
