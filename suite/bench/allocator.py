"""glibc malloc tuning for CPU runs: keep freed memory in the heap instead of returning it to the kernel.

With glibc's defaults a large tensor (≥ 128 KiB, the threshold then adapts) is served by ``mmap`` or from
the top of the heap, and freeing it hands the pages back (``munmap`` / heap trimming). The next tensor of
that size page-faults on every 4 KiB page again — on this VM that doubles the time of a small CNN's LR
step, for the estimator and its forward floor alike. ``tune_glibc_malloc`` sets::

    M_MMAP_THRESHOLD = 32 MiB   (glibc's maximum: tensors below it come from the heap)
    M_TRIM_THRESHOLD = 2 GiB    (mallopt's largest int: the heap top is, in practice, never trimmed)

the in-process equivalent of ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=...`` (what the
PyTorch CPU tuning guides achieve with jemalloc/tcmalloc). It changes speed only: the suite's memory
definition counts live tensor storages and is unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 2**31 - 1


def tune_glibc_malloc() -> dict[str, Any]:
    """Apply the settings above; returns what was done (``{"applied": False, "reason": ...}`` off glibc)."""
    if not sys.platform.startswith("linux"):
        return {"applied": False, "reason": f"not glibc ({sys.platform})"}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        return {"applied": False, "reason": f"no mallopt: {exc}"}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok_trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return {"applied": ok_mmap and ok_trim, "mmap_threshold": MMAP_THRESHOLD_BYTES,
            "trim_threshold": TRIM_THRESHOLD_BYTES}
