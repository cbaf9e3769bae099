"""Side-by-side timing: callables timed back to back in interleaved rounds, compared by paired ratios.

On a shared, noisy machine absolute times drift (another process takes a core, or thrashes the shared
cache, for a few seconds), but two callables timed back to back see nearly the same machine. So every
measurement here is a *ratio* of two calls made one right after the other, summarised by its median
over rounds:

    ratio(a, b) = median_r  t_r(a) / t_r(b)

``interleaved`` times every callable once per round (pairs share a round); ``back_to_back`` times each
requested pair (a, b) as two adjacent calls, alternating a-first and b-first between rounds — tighter
pairing, at the price of re-running callables that appear in several pairs.

where ``t_r(f)`` is the time of one call of ``f`` in round ``r`` on the run's clock (``clock_for``):

* CUDA: wall time, the device synchronised before and after (queued kernels are counted);
* CPU, one torch thread: the calling thread's CPU time (``time.thread_time``) — time the thread spends
  descheduled while other processes hold the cores does not count, so the ratio holds on a loaded
  machine;
* CPU, several threads: the process's CPU time (``time.process_time``): the total CPU work.

The order of the callables rotates from round to round so that no callable always runs first (cold
caches) or last.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock_for(device: torch.device | str) -> tuple[str, Callable[[], float]]:
    """(name, clock) of the module docstring for ``device`` and the current torch thread count."""
    if torch.device(device).type == "cuda":
        return "wall (cuda synchronised)", time.perf_counter
    if torch.get_num_threads() == 1:
        return "thread cpu time", time.thread_time
    return "process cpu time", time.process_time


def time_call(fn: Callable[[], object], device: torch.device | str) -> float:
    """Seconds of one ``fn()`` call on ``clock_for(device)``, the device synchronised before and after."""
    device = torch.device(device)
    clock = clock_for(device)[1]
    synchronize(device)
    start = clock()
    fn()
    synchronize(device)
    return clock() - start


@dataclass
class Timings:
    """Per-round wall times of each named callable (``times[name][r]`` is round ``r``)."""

    times: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        """Median seconds of one call of ``name``."""
        return statistics.median(self.times[name])

    def ratio(self, numerator: str, denominator: str) -> float:
        """median over rounds r of t_r(numerator) / t_r(denominator) (paired: same round, same machine)."""
        pairs = zip(self.times[numerator], self.times[denominator], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def to_json(self) -> dict[str, float]:
        return {name: self.median(name) for name in self.times}


def back_to_back(fns: Mapping[str, Callable[[], object]], pairs: Mapping[str, tuple[str, str]], *, rounds: int,
                 warmup: int = 1, device: torch.device | str = "cpu") -> tuple[dict[str, float], Timings]:
    """``({ratio name: median_r t_r(a)/t_r(b)}, all call times)`` for ``pairs = {name: (a, b)}``; in round r
    the pairs run in rotated order, each as two adjacent calls (a then b on even rounds, b then a on odd)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    device = torch.device(device)
    for _ in range(warmup):
        for name in fns:
            fns[name]()
    times = Timings({name: [] for name in fns})
    ratios: dict[str, list[float]] = {name: [] for name in pairs}
    names = list(pairs)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            a, b = pairs[name]
            order = (a, b) if r % 2 == 0 else (b, a)
            t = {key: time_call(fns[key], device) for key in order}
            for key in order:
                times.times[key].append(t[key])
            ratios[name].append(t[a] / t[b])
    return {name: statistics.median(v) for name, v in ratios.items()}, times


def interleaved(fns: Mapping[str, Callable[[], object]], *, rounds: int, warmup: int = 1,
                device: torch.device | str = "cpu") -> Timings:
    """Time every callable once per round for ``rounds`` rounds (after ``warmup`` untimed rounds).

    Round r runs the callables in the order of ``fns`` rotated by r.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    device = torch.device(device)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    out = Timings({name: [] for name in names})
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out.times[name].append(time_call(fns[name], device))
    return out
