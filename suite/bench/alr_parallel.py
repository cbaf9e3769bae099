"""ALR's layer-parallel gradient computation (``concurrent=true``) measured against its critical path.

Once a noisy pass's losses are known, the module gradients ĝ_m = VJP_m(X_m, (ℓ − b) ⊙ s_m/(σ N E|ε|))
are independent of one another, so W workers can compute them at once. With T_m the time of module m's
gradients computed alone (one thread), the phase has the list-scheduling bound

    T_phase* = max(max_m T_m, Σ_m T_m / W)            ideal phase speed-up  S* = Σ_m T_m / T_phase*

and the step, whose passes stay sequential, at best (Amdahl) T_step − T_phase + T_phase*. Measured on
the deepest CNN task's model (mnist-vgg8 at its real size, 8 parametric blocks, random 1×28×28 inputs;
batch and copies from ``BenchConfig.parallel_*``), global injection (all modules noisy in one
pass — layer-wise injection has one block's modules per pass, which leaves almost nothing to overlap):

* per-module gradient times T_m (thread CPU time, sequential, one torch thread);
* wall time of the gradient phase and of the whole step: concurrent (W workers × 1 torch thread) against
  sequential on one thread (the same work on one core: the speed-up the workers give) and against
  sequential with W intra-op threads (the same W cores used inside each op instead), timed in
  interleaved rounds (paired ratios; wall time, so a loaded machine degrades all three);
* ALR vs ULR at equal copies on the same model: step time and peak live-tensor memory.

Wall time is the only clock that can show a parallel speed-up; the ratios are paired per round.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from lrbench.suite.bench.sizes import BenchConfig


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _PhaseTimer:
    """Wraps an estimator's ``module_gradients`` (wall time of the phase) and ``slot_gradients`` (thread CPU
    time per module slot) without changing what they compute."""

    def __init__(self, estimator: Any) -> None:
        self.phase: list[float] = []
        self.per_slot: dict[int, float] = {}
        cls = type(estimator)
        module_gradients, slot_gradients = cls.module_gradients, cls.slot_gradients

        def timed_phase(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = module_gradients(estimator, *args, **kwargs)
            self.phase.append(time.perf_counter() - start)
            return out

        def timed_slot(codec: Any, records: Any, *args: Any) -> Any:
            start = time.thread_time()
            out = slot_gradients(estimator, codec, records, *args)
            index = records[0].slot.index
            self.per_slot[index] = self.per_slot.get(index, 0.0) + time.thread_time() - start
            return out

        estimator.module_gradients = timed_phase
        estimator.slot_gradients = timed_slot

    def reset(self) -> None:
        self.phase.clear()
        self.per_slot.clear()


def _model_and_batch(batch: int, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, Any]:
    from lrbench.tasks import get_task

    spec = get_task("mnist-vgg8")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = spec.build_model().to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *spec.input_shape, generator=gen).to(device)
    y = torch.randint(0, spec.num_classes, (batch,), generator=gen).to(device)
    return model, x, y, spec.loss_fn


def measure_alr_parallel(cfg: BenchConfig, missing: set[str]) -> dict[str, Any]:
    """The numbers of the module docstring; ``workers`` W = the cores available to this process."""
    from lrbench.estimators import get_estimator, list_estimators
    from lrbench.suite.training.metrics.memory import PeakMemory, state_tensors

    installed = {e["name"] for e in list_estimators()}
    if not {"alr", "ulr"} <= installed:
        missing.update({"alr", "ulr"} - installed)
        return {}
    sizes = {"batch": cfg.parallel_batch, "copies": cfg.parallel_copies, "rounds": cfg.rounds}
    device = torch.device(cfg.device)
    workers = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    model, x, y, loss_fn = _model_and_batch(sizes["batch"], device)
    common = {"copies": sizes["copies"], "sigma": cfg.sigma, "injection": "global", "baseline": "clean",
              "seed": cfg.seed}
    sequential = get_estimator("alr", **common)
    concurrent = get_estimator("alr", **common, concurrent=True, workers=workers)
    timers = {"sequential": _PhaseTimer(sequential), "concurrent": _PhaseTimer(concurrent)}

    # T_m: each module's gradients alone, one thread, sequential (median over rounds per slot).
    per_slot_rounds: list[dict[int, float]] = []
    with _torch_threads(1):
        sequential.estimate(model, loss_fn, x, y)  # warm-up
        for _ in range(sizes["rounds"]):
            timers["sequential"].reset()
            sequential.estimate(model, loss_fn, x, y)
            per_slot_rounds.append(dict(timers["sequential"].per_slot))
    slots = sorted(per_slot_rounds[0])
    module_seconds = [statistics.median(r[s] for r in per_slot_rounds) for s in slots]
    total, longest = sum(module_seconds), max(module_seconds)
    ideal_phase = max(longest, total / workers)

    # Wall time, paired rounds: sequential on 1 thread (the work), sequential with W intra-op threads, and
    # concurrent with W workers × 1 thread (both of the last two use W cores).
    def step(est: Any, threads: int) -> tuple[float, float]:
        timer = timers["sequential" if est is sequential else "concurrent"]
        timer.reset()
        with _torch_threads(threads):
            start = time.perf_counter()
            est.estimate(model, loss_fn, x, y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return time.perf_counter() - start, sum(timer.phase)

    configs = {"one_thread": (sequential, 1), "intra_op": (sequential, workers), "concurrent": (concurrent, 1)}
    for est, threads in configs.values():  # warm-up (thread pool, allocator)
        step(est, threads)
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    names = list(configs)
    for r in range(sizes["rounds"]):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rows[name].append(step(*configs[name]))

    def paired(base: str, which: int) -> float:
        return statistics.median(b[which] / c[which] for b, c in zip(rows[base], rows["concurrent"], strict=True))

    step_seq = statistics.median(s[0] for s in rows["one_thread"])
    phase_seq = statistics.median(s[1] for s in rows["one_thread"])
    amdahl = step_seq / (step_seq - phase_seq + phase_seq * ideal_phase / total) if total > 0 else None

    # ALR vs ULR at equal copies: step time (one thread, thread CPU time) and peak live-tensor memory.
    ulr = get_estimator("ulr", **common)
    comparison: dict[str, dict[str, float]] = {}
    with _torch_threads(1):
        for name, est in (("alr", sequential), ("ulr", ulr)):
            est.estimate(model, loss_fn, x, y)
            times = []
            for _ in range(sizes["rounds"]):
                start = time.thread_time()
                est.estimate(model, loss_fn, x, y)
                times.append(time.thread_time() - start)
            with PeakMemory(state_tensors(model, None, (x, y)), device) as memory:
                est.estimate(model, loss_fn, x, y)
            comparison[name] = {"step_cpu_seconds": statistics.median(times),
                                "peak_bytes": float(memory.result()["max"])}
    return {
        "model": "mnist-vgg8", "batch": sizes["batch"], "copies": sizes["copies"], "injection": "global",
        "workers": workers, "modules": len(slots),
        "module_seconds": module_seconds, "module_seconds_total": total, "module_seconds_max": longest,
        "phase_share_of_step": phase_seq / step_seq if step_seq else None,
        "ideal_phase_speedup": total / ideal_phase if ideal_phase else None,
        "phase_speedup": paired("one_thread", 1), "phase_speedup_vs_intra_op": paired("intra_op", 1),
        "ideal_step_speedup": amdahl, "step_speedup": paired("one_thread", 0),
        "step_speedup_vs_intra_op": paired("intra_op", 0),
        "median_seconds": {name: {"step": statistics.median(v[0] for v in rows[name]),
                                  "phase": statistics.median(v[1] for v in rows[name])} for name in rows},
        "alr_vs_ulr": comparison,
        "alr_over_ulr_time": comparison["alr"]["step_cpu_seconds"] / comparison["ulr"]["step_cpu_seconds"],
        "alr_over_ulr_memory": comparison["alr"]["peak_bytes"] / comparison["ulr"]["peak_bytes"],
    }
