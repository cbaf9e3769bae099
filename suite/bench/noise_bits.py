"""``alr_noise_bits_per_element``: what ALR stores per noise element until the loss is known.

    bits_per_element = 8 · noise_bytes / noise_elements

``noise_bytes`` is ALR's own log (bytes of noise kept between the noisy forward and the local VJPs).
``noise_elements`` is ALR's log of the number of noise draws when it reports one; otherwise it is
counted here: every module that owns parameters gets one draw per output unit per noisy row, and in
layer-wise injection the modules of block b see B·K_b noisy rows. ALR's sign encoding should give 1
(``noise_storage='seed'`` would give 0; storing float32 ε, 32).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lrbench.suite.bench.sizes import BenchConfig, lr_options

from .floor import per_block_copies
from .models import make_net, parametric_blocks, per_row_cross_entropy
from .util import build_estimator


def count_noise_elements(model: nn.Sequential, inputs: torch.Tensor, copies: int, injection: str) -> int:
    """Σ over modules m with own parameters of (output units of m) · (noisy rows m sees)."""
    batch = inputs.shape[0]
    blocks = parametric_blocks(model)
    rows = {b: batch * k for b, k in zip(blocks, per_block_copies(copies, len(blocks)), strict=True)}
    if injection == "global":
        rows = {b: batch * copies for b in blocks}
    counts: list[int] = []
    handles = []
    for b in blocks:
        for module in model[b].modules():
            if any(True for _ in module.parameters(recurse=False)):
                handles.append(module.register_forward_hook(
                    lambda _m, _i, out, r=rows[b]: counts.append(out.numel() // batch * r)))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return sum(counts)


def measure_noise_bits(cfg: BenchConfig, missing: set[str]) -> dict[str, Any] | None:
    """One ALR step on the bench MLP; ``None`` when ALR is not installed."""
    opts = lr_options(cfg)
    est = build_estimator("alr", opts, missing)
    if est is None:
        return None
    size = cfg.net_size("speed", "mlp")
    net = make_net("mlp", cfg.speed_depth, width=size.width, batch=size.batch, image=size.image, seed=cfg.seed,
                   device=cfg.device)
    _, logs = est.estimate(net.model, per_row_cross_entropy, net.inputs, net.targets)
    if "noise_bytes" not in logs:
        raise AssertionError("ALR logs no 'noise_bytes'")
    source = "alr_log" if "noise_elements" in logs else "counted"
    elements = int(logs["noise_elements"]) if source == "alr_log" else count_noise_elements(
        net.model, net.inputs, cfg.copies, opts["injection"])
    return {"noise_bytes": float(logs["noise_bytes"]), "noise_elements": elements,
            "elements_source": source, "bits_per_element": 8.0 * float(logs["noise_bytes"]) / elements}
