"""Time ratios, measured side by side on one 6-block MLP and one 6-block CNN per run.

For each family (each ratio's two calls back to back, rounds interleaved, medians — ``timing.back_to_back``):

* ``ulr_over_floor``  = t(layer-wise ULR step, prefix sharing) ÷ t(its physical forward floor:
  ``floor.run_plan`` with ``share_head`` — the clean prefix AND the noisy block's first row-wise module
  run at batch B, everything after it on B·K rows);
* ``ulr_over_block_floor`` = the same over the block-level floor (the noisy block runs whole on B·K rows);
* ``alr_over_floor``  = the same as ``ulr_over_floor`` for ALR (layer-wise, prefix sharing);
* ``global_over_floor`` = t(global-injection ULR step) ÷ t(clean pass + one pass on B·K rows, its first
  module at batch B);
* ``prefix_speedup``  = t(layer-wise ULR, naive replay: every block's copies re-run the whole net)
                        ÷ t(layer-wise ULR, prefix sharing), same copies;
* ``prefix_speedup_of_floors`` = t(naive replay's forward floor, nothing shared) ÷ t(the physical floor): the
  speed-up prefix sharing would give if noise, VJPs and bookkeeping cost nothing (its ceiling);
* ``bp_step_over_forward`` = t(BP step: forward + backward) ÷ t(one no-grad forward + loss at batch B).

``ulr_breakdown_ms`` splits one ULR step into forward floor, noise draws, local VJPs and the rest
(``breakdown``). A step is one ``estimator.estimate`` call (the optimizer update is the same for every estimator and is
left out). Estimators that are not installed yet are reported under ``missing``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lrbench.suite.bench.sizes import BenchConfig, lr_options

from .breakdown import breakdown_for
from .floor import forward_only, lr_plan, run_plan
from .models import BenchNet, make_net, per_row_cross_entropy
from .timing import back_to_back
from .util import build_estimator


def _step(est: Any, net: BenchNet) -> Callable[[], object]:
    return lambda: est.estimate(net.model, per_row_cross_entropy, net.inputs, net.targets)


def _floor(net: BenchNet, cfg: BenchConfig, injection: str, prefix_sharing: bool = True,
           share_head: bool = True) -> Callable[[], object]:
    plan = lr_plan(net.model, cfg.copies, injection, prefix_sharing)
    return lambda: run_plan(net.model, per_row_cross_entropy, net.inputs, net.targets, plan,
                            share_head=share_head)


def speed_net(cfg: BenchConfig, family: str) -> BenchNet:
    size = cfg.net_size("speed", family)
    return make_net(family, cfg.speed_depth, width=size.width, batch=size.batch, image=size.image,
                    seed=cfg.seed, device=cfg.device)


def measure_family(cfg: BenchConfig, family: str, missing: set[str]) -> dict[str, Any]:
    """All time ratios of one family; keys absent when their estimator is missing."""
    net = speed_net(cfg, family)
    fns: dict[str, Callable[[], object]] = {
        "forward": lambda: forward_only(net.model, per_row_cross_entropy, net.inputs, net.targets)}
    candidates = {
        "bp": ("bp", {"seed": cfg.seed}),
        "ulr": ("ulr", lr_options(cfg)),
        "ulr_naive": ("ulr", lr_options(cfg, prefix_sharing=False)),
        "alr": ("alr", lr_options(cfg)),
        "ulr_global": ("ulr", lr_options(cfg, injection="global")),
    }
    for key, (name, opts) in candidates.items():
        est = build_estimator(name, opts, missing)
        if est is not None:
            fns[key] = _step(est, net)
    if "ulr" in fns or "alr" in fns:
        fns["layerwise_floor"] = _floor(net, cfg, "layerwise")
        fns["block_floor"] = _floor(net, cfg, "layerwise", share_head=False)
    if "ulr_naive" in fns:
        fns["naive_floor"] = _floor(net, cfg, "layerwise", prefix_sharing=False, share_head=False)
    if "ulr_global" in fns:
        fns["global_floor"] = _floor(net, cfg, "global")
    pairs = {"ulr_over_floor": ("ulr", "layerwise_floor"), "ulr_over_block_floor": ("ulr", "block_floor"),
             "alr_over_floor": ("alr", "layerwise_floor"),
             "global_over_floor": ("ulr_global", "global_floor"), "prefix_speedup": ("ulr_naive", "ulr"),
             "prefix_speedup_of_floors": ("naive_floor", "layerwise_floor"),
             "bp_step_over_forward": ("bp", "forward")}
    pairs = {ratio: (num, den) for ratio, (num, den) in pairs.items() if num in fns and den in fns}
    ratios, timings = back_to_back(fns, pairs, rounds=cfg.rounds, warmup=1, device=torch.device(cfg.device))
    plan = lr_plan(net.model, cfg.copies, "layerwise")
    return {"ratios": ratios, "ulr_breakdown_ms": breakdown_for(cfg, net, missing), "median_seconds": timings.to_json(), "parameters": sum(
        p.numel() for p in net.model.parameters()), "layerwise_floor_row_blocks": plan.row_blocks(
        net.model, net.inputs.shape[0])}


def measure_speed(cfg: BenchConfig, missing: set[str]) -> dict[str, Any]:
    """``{family: measure_family(...)}`` for the MLP and the CNN."""
    return {family: measure_family(cfg, family, missing) for family in ("mlp", "cnn")}
