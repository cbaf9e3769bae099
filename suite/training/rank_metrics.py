"""A run's metrics across ranks: throughput of the whole job, memory per rank.

**Metrics across ranks**: memory is reported per rank (``gather_floats``), throughput summed over
ranks and step time the max over ranks (``reduce_float(..., "max")``; ``throughput_across_ranks``).
Every helper is a no-op returning the local value when torch.distributed is not initialised, so the
single-process path runs the same code.
"""

from __future__ import annotations

from typing import Any

from .gradient_sync import gather_floats, is_distributed, reduce_float, world


def throughput_across_ranks(samples: float, seconds: float, steps: int) -> dict[str, float]:
    """Throughput of the whole job: samples summed over ranks, time the slowest rank's.

    samples_per_second = Σ_r samples_r / max_r seconds_r ; step_time_seconds = max_r seconds_r / steps.
    """
    total_samples = reduce_float(samples, "sum")
    slowest = reduce_float(seconds, "max")
    return {"samples_per_second": total_samples / slowest if slowest > 0 else 0.0,
            "step_time_seconds": slowest / steps if steps else 0.0,
            "world_size": float(world()[1])}


def merge_rank_metrics(metrics: dict[str, Any], mode: str = "data") -> dict[str, Any]:
    """Turn one rank's ``metrics`` (RESULTS.md) into the job's, on every rank (collective; no-op alone).

    * ``throughput``: each rank's timed seconds T_r = step_time·timed_steps and samples S_r =
      samples_per_second·T_r; the job's samples_per_second = Σ_r S_r / max_r T_r and step_time_seconds =
      max_r T_r / timed_steps (the slowest rank sets the pace: every step ends in a collective);
      ``flops_per_step`` = Σ_r (the work of one global step; each rank measured its shard). In
      copy-parallel mode every rank saw the whole batch: samples count once, Σ_r S_r / R.
    * ``peak_memory_bytes``: ``per_device`` = [peak of rank 0, peak of rank 1, ...], ``max`` their max,
      ``cuda_allocator_peak`` the max over ranks.
    """
    if not is_distributed():
        return metrics
    out = dict(metrics)
    tp = metrics.get("throughput")
    if isinstance(tp, dict) and tp.get("timed_steps"):
        seconds = float(tp.get("step_time_seconds") or 0.0) * int(tp["timed_steps"])
        samples = float(tp.get("samples_per_second") or 0.0) * seconds
        if mode == "copies":
            samples /= world()[1]
        merged = throughput_across_ranks(samples, seconds, int(tp["timed_steps"]))
        out["throughput"] = {**tp, "samples_per_second": merged["samples_per_second"],
                             "step_time_seconds": merged["step_time_seconds"]}
    if isinstance(tp, dict) and tp.get("flops_per_step") is not None:
        out["throughput"] = {**out["throughput"], "flops_per_step": reduce_float(float(tp["flops_per_step"]), "sum")}
    mem = metrics.get("peak_memory_bytes")
    if isinstance(mem, dict) and mem.get("per_device"):
        per_rank = gather_floats(float(max(mem["per_device"])))
        cuda_peak = mem.get("cuda_allocator_peak")
        cuda_max = reduce_float(float(cuda_peak) if cuda_peak is not None else -1.0, "max")
        out["peak_memory_bytes"] = {**mem, "per_device": [int(v) for v in per_rank], "max": int(max(per_rank)),
                                    "cuda_allocator_peak": int(cuda_max) if cuda_max >= 0 else None}
    return out
