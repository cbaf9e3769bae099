"""Where the time of one layer-wise ULR step goes: forward floor, noise draws, local VJPs, the rest.

A diagnostic beside ``ulr_over_floor``: the step is timed (on ``timing.clock_for``'s clock) while the LR
engine's two extra-to-the-floor jobs are wrapped with the same clock —

* ``noise_draw``: ``NoiseCodec.draw`` (one vectorised ε draw per noisy module call);
* ``local_vjps``: ``LikelihoodRatioEstimator.module_gradients`` (score × loss weights, one rule per call);

and ``forward_floor`` is ``floor.run_plan`` (physical floor). ``rest`` = step − floor − noise − VJPs:
losses, replication, bookkeeping. Medians over ``rounds`` steps. Returns ``None`` when the engine's
internals are not where this expects them (it is a diagnostic, not a contract).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from lrbench.suite.bench.sizes import BenchConfig, lr_options

from .floor import lr_plan, run_plan
from .models import BenchNet, per_row_cross_entropy
from .timing import clock_for, synchronize


@contextmanager
def _timed(owner: Any, name: str, totals: dict[str, float], key: str, clock: Callable[[], float]) -> Iterator[None]:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] += clock() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def ulr_step_breakdown(cfg: BenchConfig, net: BenchNet, estimator: Any) -> dict[str, float] | None:
    """Milliseconds per step: ``step``, ``forward_floor``, ``noise_draw``, ``local_vjps``, ``rest``."""
    try:
        from lrbench.estimators.lr_engine import LikelihoodRatioEstimator
        from lrbench.estimators.lr_hooks import NoiseCodec
    except ImportError:
        return None
    if not (hasattr(NoiseCodec, "draw") and hasattr(LikelihoodRatioEstimator, "module_gradients")):
        return None
    device = torch.device(cfg.device)
    clock = clock_for(device)[1]
    plan = lr_plan(net.model, cfg.copies, "layerwise")
    samples: dict[str, list[float]] = {k: [] for k in ("step", "forward_floor", "noise_draw", "local_vjps")}
    for _ in range(max(3, cfg.rounds // 3)):
        totals = {"noise_draw": 0.0, "local_vjps": 0.0}
        with _timed(NoiseCodec, "draw", totals, "noise_draw", clock), \
                _timed(LikelihoodRatioEstimator, "module_gradients", totals, "local_vjps", clock):
            synchronize(device)
            start = clock()
            estimator.estimate(net.model, per_row_cross_entropy, net.inputs, net.targets)
            synchronize(device)
            samples["step"].append(clock() - start)
        samples["noise_draw"].append(totals["noise_draw"])
        samples["local_vjps"].append(totals["local_vjps"])
        start = clock()
        run_plan(net.model, per_row_cross_entropy, net.inputs, net.targets, plan, share_head=True)
        synchronize(device)
        samples["forward_floor"].append(clock() - start)
    out = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    out["rest"] = out["step"] - out["forward_floor"] - out["noise_draw"] - out["local_vjps"]
    return out


def breakdown_for(cfg: BenchConfig, net: BenchNet, missing: set[str]) -> dict[str, float] | None:
    """``ulr_step_breakdown`` with the bench's layer-wise ULR, or ``None`` when ULR is not installed."""
    from .util import build_estimator

    est = build_estimator("ulr", lr_options(cfg), missing)
    if est is None:
        return None
    est.estimate(net.model, per_row_cross_entropy, net.inputs, net.targets)   # warm-up (block costs)
    return ulr_step_breakdown(cfg, net, est)
