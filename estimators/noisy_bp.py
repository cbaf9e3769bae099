"""BP under training noise: backprop through a forward pass with noise on every parametric module's output.

The control for "is it the likelihood ratio, or the noise?": the same noise ULR injects (law, σ, on the
output of every module owning trainable parameters — the pre-activations), but the gradient taken by
ordinary backprop through the noisy network (the pathwise / reparameterisation gradient):

    ĝ = ∇_θ (1/(B·K)) Σ_{i,k} ℓ(f(x_i; θ, σ·ε_ik), y_i)      ε_ik ~ law, K noisy copies per sample

E[ĝ] = ∇_θ E_ε[L(θ, σε)]: the gradient of the same noise-smoothed loss that ULR with global injection
estimates, without the likelihood ratio's O(1/σ²) variance. Noise is keyed on (seed, step, module, call),
and dropout masks on (seed, step) by the ``Estimator.estimate`` template, so the same seed gives the same gradient. The returned loss is the
clean (noise-free) batch loss. This module depends on torch only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Estimator, LossFn, Option
from .noise import NOISE_LAWS
from .registry import register_estimator
from .rules import owns_trainable_parameters
from .seeding import counter_seed, generator


@register_estimator
class NoisyBackprop(Estimator):
    """Backprop through the network with ULR's output noise switched on (noise as a regulariser)."""

    name = "bp-noise"
    description = ("backprop through a forward with noise on every parametric module's output "
                   "(pathwise gradient of ULR's smoothed loss; the 'trained under noise' control)")
    noise_scope = "sample"
    copies_option = "copies"
    options = {
        "copies": Option(1, "int", "K: noisy copies of every sample in the one backprop pass", minimum=1),
        "sigma": Option(0.01, "float", "σ: scale of the noise on module outputs", exclusive_minimum=0.0),
        "noise": Option("gaussian", "choice", "noise law (unit variance)", choices=tuple(NOISE_LAWS)),
    }

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.opts
        law, sigma, copies = NOISE_LAWS[o["noise"]], o["sigma"], o["copies"]
        noisy = [m for m in model.modules() if owns_trainable_parameters(m)]
        calls: dict[int, int] = {}

        def add_noise(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            index = noisy.index(module)
            call = calls.get(index, 0)
            calls[index] = call + 1
            gen = generator(counter_seed(o["seed"], self.step, index, call), output.device)
            return output + sigma * law.sample(tuple(output.shape), gen, output.dtype, output.device)

        with torch.no_grad():
            clean = loss_fn(model(inputs), targets).mean()
        handles = [m.register_forward_hook(add_noise) for m in noisy]
        try:
            with torch.enable_grad():
                rows = inputs.repeat_interleave(copies, 0)
                loss_fn(model(rows), targets.repeat_interleave(copies, 0)).mean().backward()
        finally:
            for handle in handles:
                handle.remove()
        return clean.detach(), {"forward_passes": self.forward_passes_per_step(model, inputs.shape[0])}

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """1 clean pass (the returned loss) + K noisy copies (the backward is not a forward pass)."""
        return 1.0 + float(self.opts["copies"])
