"""BP: the autograd reference every other estimator is tested against."""

from __future__ import annotations

import torch
from torch import nn

from .base import Estimator, LossFn
from .registry import register_estimator


@register_estimator
class Backprop(Estimator):
    """ĝ = ∇_θ (1/B) Σ_i ℓ_i computed by ``loss.mean().backward()``."""

    name = "bp"
    noise_scope = "none"
    description = "backpropagation (autograd): the exact reference gradient"
    options = {}

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.enable_grad():
            loss = loss_fn(model(inputs), targets).mean()
            loss.backward()
        return loss.detach(), {"forward_passes": 1.0}

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        return 1.0
