"""Run every bench measurement, summarise each as one headline ratio, and compare with its target.

Headlines (``result["ratios"]``), each the *worst* case over what was measured:

* ``ulr_over_floor``, ``alr_over_floor``, ``global_over_floor``: max over the MLP and CNN;
* ``prefix_speedup``: min over the MLP and CNN;  ``bp_step_over_forward``: max (reference, no target);
* ``lr_mem_over_bp``: max over ULR/ALR × MLP/CNN at depth ≥ 8;
* ``alr_noise_bits_per_element``; ``xconv_net_mem_saving``; ``harness_overhead``;
* ``alr_concurrent_speedup`` (wall-clock step speed-up of ``concurrent=true`` over one thread) beside
  ``alr_concurrent_ideal`` (its Amdahl bound from the module-gradient critical path; no target).

A headline whose estimator is not installed is ``None`` and its estimator is listed in ``missing``.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from typing import Any

import torch

from lrbench.suite.bench.allocator import tune_glibc_malloc
from lrbench.suite.bench.alr_parallel import measure_alr_parallel
from lrbench.suite.bench.harness import measure_harness
from lrbench.suite.bench.lr_memory import headline as lr_memory_headline
from lrbench.suite.bench.lr_memory import measure_lr_memory
from lrbench.suite.bench.noise_bits import measure_noise_bits
from lrbench.suite.bench.sizes import BenchConfig
from lrbench.suite.bench.speed import measure_speed
from lrbench.suite.bench.timing import clock_for
from lrbench.suite.bench.xconv_memory import measure_xconv_memory

# name -> (comparison, target value); comparison "<=", ">=" or "==".
TARGETS: dict[str, tuple[str, float]] = {
    "ulr_over_floor": ("<=", 1.10),
    "prefix_speedup": (">=", 1.6),
    "lr_mem_over_bp": ("<=", 0.5),
    "alr_noise_bits_per_element": ("==", 1.0),
    "xconv_net_mem_saving": (">=", 1.8),
    "harness_overhead": ("<=", 1.05),
}
MEASUREMENTS = ("speed", "lr_memory", "noise_bits", "xconv_memory", "harness", "alr_parallel")


def machine() -> dict[str, Any]:
    """CPU model and cores (from ``lscpu`` when available), torch version and threads, GPU if any."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu_model"] = fields.get("Model name", "").strip() or platform.processor()
    except (OSError, subprocess.SubprocessError):
        info["cpu_model"] = platform.processor()
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _worst(per_family: dict[str, Any], key: str, pick: Callable[[list[float]], float]) -> float | None:
    values = [fam["ratios"][key] for fam in per_family.values() if key in fam["ratios"]]
    return pick(values) if values else None


def headlines(details: dict[str, Any]) -> dict[str, float | None]:
    """The headline ratios of the module docstring from the per-measurement details."""
    speed = details.get("speed") or {}
    out: dict[str, float | None] = {
        "ulr_over_floor": _worst(speed, "ulr_over_floor", max),
        "alr_over_floor": _worst(speed, "alr_over_floor", max),
        "global_over_floor": _worst(speed, "global_over_floor", max),
        "prefix_speedup": _worst(speed, "prefix_speedup", min),
        "bp_step_over_forward": _worst(speed, "bp_step_over_forward", max),
        "lr_mem_over_bp": lr_memory_headline(details["lr_memory"]) if details.get("lr_memory") else None,
        "alr_noise_bits_per_element": (details.get("noise_bits") or {}).get("bits_per_element"),
        "xconv_net_mem_saving": (details.get("xconv_memory") or {}).get("saving"),
        "harness_overhead": (details.get("harness") or {}).get("overhead"),
        "alr_concurrent_speedup": (details.get("alr_parallel") or {}).get("step_speedup"),
        "alr_concurrent_ideal": (details.get("alr_parallel") or {}).get("ideal_step_speedup"),
    }
    return out


def check_targets(ratios: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """``{name: {"target": "<= 1.1", "value": v, "met": bool | None}}`` (None: not measured)."""
    out = {}
    for name, (op, target) in TARGETS.items():
        value = ratios.get(name)
        if value is None or not math.isfinite(value):
            met = None
        elif op == "<=":
            met = value <= target
        elif op == ">=":
            met = value >= target
        else:
            met = math.isclose(value, target, rel_tol=1e-9)
        out[name] = {"target": f"{op} {target:g}", "value": value, "met": met}
    return out


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every measurement of ``MEASUREMENTS`` not in ``cfg.skip``, in one process; returns the JSON record."""
    unknown = sorted(set(cfg.skip) - set(MEASUREMENTS))
    if unknown:
        raise ValueError(f"unknown bench measurement '{unknown[0]}'; valid: {', '.join(MEASUREMENTS)}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    missing: set[str] = set()
    clock = clock_for(cfg.device)[0]
    allocator = tune_glibc_malloc() if cfg.malloc_tuning and cfg.device == "cpu" else {"applied": False,
                                                                                     "reason": "not requested"}
    functions = {"speed": measure_speed, "lr_memory": measure_lr_memory, "noise_bits": measure_noise_bits,
                 "xconv_memory": measure_xconv_memory, "harness": measure_harness,
                 "alr_parallel": measure_alr_parallel}
    details: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    started = time.time()
    try:
        for name in MEASUREMENTS:
            if name in cfg.skip:
                continue
            if progress:
                progress(name)
            t0 = time.perf_counter()
            details[name] = functions[name](cfg, missing)
            seconds[name] = time.perf_counter() - t0
    finally:
        info = machine()
        torch.set_num_threads(previous_threads)
    ratios = headlines(details)
    return {"ratios": ratios, "targets": check_targets(ratios), "missing": sorted(missing),
            "details": details, "clock": clock, "allocator": allocator, "seconds": seconds, "total_seconds": time.time() - started,
            "config": cfg.to_json(), "machine": info, "git_commit": _git_commit(),
            "gpu_note": None if info["cuda"] else
            "no GPU on this machine: GPU absolute numbers, MFU and the check of live_tensor_bytes against "
            "torch.cuda.max_memory_allocated could not be taken (the CUDA code path exists: --device cuda)"}
