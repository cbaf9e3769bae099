"""The training clock and throughput.

Only the *training step* is timed: ``estimator.estimate(...)`` plus ``optimizer.step()`` (and the lr
scheduler step), with the device synchronised at both ends of every timed segment. Data loading,
logging, evaluation and the gradient-quality reference (BP) are outside the segments.

* ``step_time_seconds``  = Σ_{timed steps} t_s / n_timed
* ``samples_per_second`` = Σ_{timed steps} B_s / Σ_{timed steps} t_s
* timed steps = every step except the first ``warmup_steps`` = min(5, ⌊n/2⌋) steps and the
  instrumented step (the one measured for memory and FLOPs, slowed down by the dispatch modes).
* ``elapsed()`` (the clock of ``history[].wall_time`` and time-to-target) = Σ t_s over the steps so far,
  where an instrumented step counts as the mean duration of the uninstrumented steps so far (its own
  duration when there is none yet).
* ``forward_passes_per_step`` = ``estimator.forward_passes_per_step(model, B)``;
  ``flops_per_step`` = FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` over the whole
  instrumented step (every forward copy, local VJP or backward, and the optimizer update kernels it
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
    instrumented: list[bool] = field(default_factory=list)
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

    def end_step(self, batch_size: int, instrumented: bool = False) -> None:
        self.durations.append(self._current)
        self.samples.append(int(batch_size))
        self.instrumented.append(bool(instrumented))

    @property
    def steps(self) -> int:
        return len(self.durations)

    def elapsed(self) -> float:
        """Cumulative training seconds so far (instrumented steps imputed, see module docstring)."""
        plain = [d for d, i in zip(self.durations, self.instrumented, strict=True) if not i]
        marked = [d for d, i in zip(self.durations, self.instrumented, strict=True) if i]
        if not marked:
            return float(sum(plain))
        mean = sum(plain) / len(plain) if plain else None
        return float(sum(plain) + (mean * len(marked) if mean is not None else sum(marked)))

    def summary(self, forward_passes_per_step: float | None, flops_per_step: float | None) -> dict[str, Any]:
        """The RESULTS.md ``throughput`` object."""
        n = self.steps
        warmup = min(MAX_WARMUP_STEPS, n // 2)
        timed = [i for i in range(warmup, n) if not self.instrumented[i]]
        seconds = sum(self.durations[i] for i in timed)
        samples = sum(self.samples[i] for i in timed)
        return {
            "samples_per_second": samples / seconds if timed and seconds > 0 else None,
            "step_time_seconds": seconds / len(timed) if timed else None,
            "warmup_steps": warmup,
            "timed_steps": len(timed),
            "forward_passes_per_step": forward_passes_per_step,
            "flops_per_step": flops_per_step,
        }
