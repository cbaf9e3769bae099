"""``xconv_net_mem_saving``: BP's peak training-step memory ÷ XConv's, ResNet-18 at 224², r probes.

    xconv_net_mem_saving = peak(BP step) / peak(XConv step)

same model, same batch (``cfg.xconv_batch`` images of ``cfg.xconv_image``² pixels — small on CPU), peaks
with the suite's definition (``step_memory.training_step_peak``). XConv stores ZᵀX (r columns) instead
of each convolution's input, so the saving grows with the share of conv inputs in BP's activation
memory; parameters and gradients (≈ 2 × 45 MB for ResNet-18) are common to both and bound it. XConv runs
with its defaults and ``probes`` = r; when it has a ``relu_mask`` option, the variant without it is
measured beside (``saving_by_variant``): without it a ReLU keeps the next conv's input alive anyway.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lrbench.suite.bench.sizes import BenchConfig

from .models import per_row_cross_entropy
from .step_memory import training_step_peak
from .util import build_estimator


def resnet18(image: int, classes: int = 10) -> tuple[nn.Module, str]:
    """The suite's ResNet-18 (``tasks.models.cnn.build_resnet18``, torchvision layout) for image² inputs."""
    from lrbench.tasks.models.cnn import build_resnet18

    return build_resnet18((3, image, image), classes), "lrbench.tasks.models.cnn.build_resnet18"


def xconv_options(cfg: BenchConfig) -> dict[str, Any]:
    return {"probes": cfg.xconv_probes, "seed": cfg.seed}


def measure_xconv_memory(cfg: BenchConfig, missing: set[str]) -> dict[str, Any] | None:
    """Peaks of BP and XConv on ResNet-18; ``None`` when XConv is not installed."""
    est = build_estimator("xconv", xconv_options(cfg), missing)
    if est is None:
        return None
    bp = build_estimator("bp", {"seed": cfg.seed}, missing)
    variants = [("bp", bp), ("xconv", est)]
    if "relu_mask" in est.opts:
        variants.append(("xconv_without_relu_mask",
                         build_estimator("xconv", {**xconv_options(cfg), "relu_mask": False}, missing)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model, source = resnet18(cfg.xconv_image)
        inputs = torch.rand(cfg.xconv_batch, 3, cfg.xconv_image, cfg.xconv_image)
        targets = torch.randint(0, 10, (cfg.xconv_batch,))
    model, inputs, targets = model.to(cfg.device), inputs.to(cfg.device), targets.to(cfg.device)
    peaks = {name: training_step_peak(model, e, per_row_cross_entropy, inputs, targets, cfg.device)
             for name, e in variants}
    return {"model": source, "batch": cfg.xconv_batch, "image": cfg.xconv_image, "probes": cfg.xconv_probes,
            "peak_bytes": {k: v["max"] for k, v in peaks.items()},
            "cuda_allocator_peak": {k: v["cuda_allocator_peak"] for k, v in peaks.items()},
            "saving": peaks["bp"]["max"] / peaks["xconv"]["max"],
            "saving_by_variant": {k: peaks["bp"]["max"] / v["max"] for k, v in peaks.items() if k != "bp"}}
