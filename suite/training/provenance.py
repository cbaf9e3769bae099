"""What a run record says about where it ran: git commit, package versions, hardware, timestamps."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout lrbench runs from, or None (not a git checkout, no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    import torch

    return {"lrbench": _version("lrbench"), "python": platform.python_version(), "torch": torch.__version__,
            "pytorch_lightning": _version("pytorch-lightning"), "torchvision": _version("torchvision"),
            "numpy": _version("numpy")}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(accelerator: str, devices: int, world_size: int) -> dict[str, Any]:
    """``{"device_type", "device_name", "device_count", "world_size"}`` for the run's accelerator."""
    import torch

    if accelerator == "gpu":
        name = torch.cuda.get_device_name(0)
        device_type = "cuda"
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        name = f"{_cpu_name()} ({cores} cores, {torch.get_num_threads()} torch threads)"
        device_type = "cpu"
    return {"device_type": device_type, "device_name": name, "device_count": int(devices),
            "world_size": int(world_size)}


def now() -> str:
    """UTC time, ISO 8601 with offset, seconds precision."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
