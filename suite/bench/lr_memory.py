"""``lr_mem_over_bp``: peak training-step memory of ULR and ALR ÷ BP's, same model, same batch.

    lr_mem_over_bp[est][family][depth] = peak(est step) / peak(BP step)

for the bench MLP and CNN at each depth of ``cfg.mem_depths``, with ``chunk`` = B / ``cfg.mem_chunk_divisor``
so that the LR estimators process at most that many noisy rows at a time (their memory then does not
grow with the number of copies). ``copies_invariance`` repeats the deepest ULR case with 4× the copies:
a value near 1 shows chunking bounds memory independent of copies. Peaks:
``step_memory.training_step_peak``. On CUDA every step's allocator peak is compared with its
``live_tensor_bytes`` (``cuda_allocator_check``: the 10 % agreement the suite's definition promises).
"""

from __future__ import annotations

from typing import Any

from lrbench.suite.bench.sizes import BenchConfig, lr_options

from .models import make_net, per_row_cross_entropy
from .step_memory import training_step_peak
from .util import build_estimator

LR_ESTIMATORS = ("ulr", "alr")


def _peak(cfg: BenchConfig, family: str, depth: int, name: str, opts: dict[str, Any],
          missing: set[str], allocator: list[tuple[int, int]] | None = None) -> int | None:
    """``live_tensor_bytes`` peak of one step; on CUDA (live, allocator peak) is appended to ``allocator``."""
    est = build_estimator(name, opts, missing)
    if est is None:
        return None
    size = cfg.net_size("mem", family)
    net = make_net(family, depth, width=size.width, batch=size.batch, image=size.image, seed=cfg.seed,
                   device=cfg.device)
    result = training_step_peak(net.model, est, per_row_cross_entropy, net.inputs, net.targets, cfg.device)
    if allocator is not None and result.get("cuda_allocator_peak") is not None:
        allocator.append((int(result["max"]), int(result["cuda_allocator_peak"])))
    return int(result["max"])


def allocator_check(pairs: list[tuple[int, int]], tolerance: float = 0.10) -> dict[str, Any] | None:
    """On CUDA: max over steps of |allocator peak / live_tensor_bytes − 1| and whether it is ≤ ``tolerance``
    (the suite's memory definition against ``torch.cuda.max_memory_allocated``); ``None`` on CPU."""
    if not pairs:
        return None
    gap = max(abs(cuda / live - 1.0) for live, cuda in pairs)
    return {"steps": len(pairs), "max_relative_gap": gap, "within": gap <= tolerance, "tolerance": tolerance}


def measure_lr_memory(cfg: BenchConfig, missing: set[str]) -> dict[str, Any]:
    """Peaks (bytes) and ratios for every (estimator, family, depth); see the module docstring."""
    peaks: dict[str, dict[str, dict[int, int]]] = {}
    ratios: dict[str, dict[str, dict[int, float]]] = {}
    allocator: list[tuple[int, int]] = []
    for family in ("mlp", "cnn"):
        for depth in cfg.mem_depths:
            bp = _peak(cfg, family, depth, "bp", {"seed": cfg.seed}, missing, allocator)
            assert bp is not None
            peaks.setdefault("bp", {}).setdefault(family, {})[depth] = bp
            for name in LR_ESTIMATORS:
                peak = _peak(cfg, family, depth, name,
                             lr_options(cfg, chunk=cfg.mem_chunk(family), copies=cfg.mem_copies), missing, allocator)
                if peak is None:
                    continue
                peaks.setdefault(name, {}).setdefault(family, {})[depth] = peak
                ratios.setdefault(name, {}).setdefault(family, {})[depth] = peak / bp
    out: dict[str, Any] = {"peak_bytes": peaks, "ratios": ratios, "cuda_allocator_check": allocator_check(allocator)}
    if "ulr" in ratios:
        deepest = max(cfg.mem_depths)
        more = _peak(cfg, "mlp", deepest, "ulr",
                     lr_options(cfg, chunk=cfg.mem_chunk("mlp"), copies=4 * cfg.mem_copies), missing)
        if more is not None:
            out["copies_invariance"] = more / peaks["ulr"]["mlp"][deepest]
    return out


def headline(result: dict[str, Any], min_depth: int = 8) -> float | None:
    """The worst (largest) ULR/ALR ratio over families at depth ≥ ``min_depth`` (all depths if none)."""
    values = [r for fam in result["ratios"].values() for per_depth in fam.values()
              for d, r in per_depth.items() if d >= min_depth]
    if not values:
        values = [r for fam in result["ratios"].values() for per_depth in fam.values() for r in per_depth.values()]
    return max(values) if values else None
