"""How many runs at once (``--jobs``) and how many torch threads each (``threads``): chosen, not inherited.

    cores      = len(os.sched_getaffinity(0))          # the cores this process may use (taskset, cgroups' cpuset)
    budget     = max(1, cores // jobs)                  # each of the jobs workers running at once
    intra-op   = 1            if the run's step costs < SMALL_STEP_FLOPS   ("auto": tiny models do not scale)
               = budget       otherwise
    inter-op   = budget       (set once per process, before any parallel work: torch refuses it later)
    jobs (CPU) = min(cores, memory_available // RUN_PROCESS_BYTES)
    jobs (GPU) = min(devices, memory_available // RUN_PROCESS_BYTES)

A number given by the user (``threads=2``, ``--threads 2``) is used as given. The thread count a run used
goes into its record (``hardware.threads``). ``OMP_NUM_THREADS`` is not needed: torch's default (one
thread per core in every process) is what oversubscribes a shared machine.

SMALL_STEP_FLOPS: measured with ``scripts/measure_thread_crossover.py`` on the 2-core EPYC (BENCHMARKS.md,
"Threads"): every digits step (≤ 0.4 GFLOP, BP and 16-copy ULR) is no faster, often slower, at 2 threads
than at 1; cifar10-convnet BP (10 GFLOP) ran 1.9× faster at 2. The crossover lies between, at about 1 GFLOP.
"""

from __future__ import annotations

import os
from typing import Any

SMALL_STEP_FLOPS = 1e9
RUN_PROCESS_BYTES = int(1.1e9)  # peak resident size of one run process (mostly imports; issue 16)
_INTEROP_SET: list[int] = []    # the inter-op count this process set (torch allows it once)
_BUDGET: list[int] = []         # this process's thread budget (configure_process)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS/Windows have no affinity call


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo (what new processes can use without swapping), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_jobs(accelerator: str) -> int:
    """Runs at once the machine can hold: cores (CPU) or CUDA devices (GPU), bounded by memory."""
    slots = max(1, cuda_device_count()) if accelerator == "gpu" else available_cores()
    memory = available_memory_bytes()
    if memory is not None:
        slots = min(slots, max(1, memory // RUN_PROCESS_BYTES))
    return max(1, slots)


def thread_budget(jobs: int, cores: int | None = None) -> int:
    """Threads each of ``jobs`` concurrent workers may use: ``max(1, cores // jobs)``."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


def check_threads(value: Any) -> int | str:
    """``threads`` config value: ``"auto"`` (or None) or an integer ≥ 1; anything else is a UserError."""
    from lrbench.suite.errors import UserError

    if value is None or value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"'threads' must be 'auto' or an integer >= 1, got {value!r}")
    return value


def intra_op_threads(setting: int | str, budget: int, step_flops: float | None) -> int:
    """The intra-op thread count of one run (module docstring): the user's number, else 1 for a step
    under ``SMALL_STEP_FLOPS`` (unknown cost counts as large), else the budget."""
    if setting != "auto":
        return int(setting)
    if step_flops is not None and step_flops < SMALL_STEP_FLOPS:
        return 1
    return budget


def set_interop_threads(count: int) -> int:
    """``torch.set_num_interop_threads(count)`` once per process; returns the inter-op count in force.

    torch accepts the call only before the first inter-op parallel work (and only once): the workers call it
    first thing; a process that already ran parallel work keeps what it has."""
    import torch

    if not _INTEROP_SET:
        try:
            torch.set_num_interop_threads(max(1, int(count)))
        except RuntimeError:  # already set, or parallel work already started in this process
            pass
        _INTEROP_SET.append(torch.get_num_interop_threads())
    return torch.get_num_interop_threads()


def set_intra_op_threads(count: int) -> int:
    """``torch.set_num_threads(count)`` (allowed at any time); returns the count in force."""
    import torch

    torch.set_num_threads(max(1, int(count)))
    return torch.get_num_threads()


def hardware_threads() -> dict[str, int]:
    """What a record's ``hardware.threads`` says: torch's intra- and inter-op counts now, and the cores."""
    import torch

    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
            "cores_available": available_cores()}


def configure_process(jobs: int) -> int:
    """Called once by each process that runs runs, before any torch work: the budget for ``jobs``
    concurrent workers, inter-op threads set to it; returns the budget."""
    budget = thread_budget(jobs)
    _BUDGET[:] = [budget]
    set_interop_threads(budget)
    set_intra_op_threads(budget)
    return budget


def process_budget() -> int:
    """The budget :func:`configure_process` set, else every available core (one process, one run at a time)."""
    return _BUDGET[0] if _BUDGET else available_cores()


def apply_for_run(setting: int | str, step_flops: float | None) -> int:
    """Set the intra-op threads of the run about to train (``threads`` setting, its step's FLOPs)."""
    return set_intra_op_threads(intra_op_threads(setting, process_budget(), step_flops))


def resolve_jobs(requested: int | None, configs: list[dict[str, Any]]) -> int:
    """``--jobs``: the user's number (≥ 1), else :func:`default_jobs`, never more than there are runs.

    DDP runs (``devices > 1``) already use all their devices, each rank a process: with them ``--jobs``
    must be 1 (a one-line UserError otherwise)."""
    from lrbench.suite.errors import UserError

    if requested is not None and requested < 1:
        raise UserError(f"--jobs must be an integer >= 1, got {requested}")
    ddp = [c for c in configs if int(c.get("devices", 1)) > 1]
    if ddp:
        if requested is not None and requested > 1:
            raise UserError(f"--jobs {requested} with devices={ddp[0]['devices']}: a DDP run already uses its "
                            "devices (one process each); use --jobs 1, or devices=1 to run runs side by side")
        return 1
    if requested is not None:
        return requested
    accelerator = configs[0]["accelerator"] if configs else "cpu"
    return max(1, min(default_jobs(accelerator), len(configs)))
