"""Gradient quality: the estimator's gradient ĝ against BP's g on the same batch and parameters.

With both flattened over every trainable parameter (float64):

* ``cosine``         = ⟨ĝ, g⟩ / (‖ĝ‖ ‖g‖)
* ``relative_error`` = ‖ĝ − g‖ / ‖g‖
* ``norm_ratio``     = ‖ĝ‖ / ‖g‖

Measured at training steps ``s`` with ``s % every == 0`` (step 0 included), right after the
estimator wrote ``.grad`` and before the optimizer step. The BP reference does not disturb training:
the estimator's ``.grad`` tensors are kept aside and put back, module buffers (BatchNorm running
statistics) and the global RNG states (CPU and CUDA: dropout) are restored, and the estimator's own
stream is not touched (it is keyed on its step counter, which BP does not advance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lrbench.estimators import Estimator, get_estimator


def flat_grad(params: list[nn.Parameter]) -> torch.Tensor:
    """Concatenation of every ``p.grad`` (float64, flattened; a missing grad counts as zeros)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().double().flatten()
                      for p in params])


def compare(estimate: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """cosine, relative_error and norm_ratio of ``estimate`` against ``reference`` (module docstring)."""
    tiny = torch.finfo(torch.float64).tiny
    ref_norm, est_norm = reference.norm(), estimate.norm()
    return {
        "cosine": float((estimate @ reference) / (est_norm * ref_norm).clamp_min(tiny)),
        "relative_error": float((estimate - reference).norm() / ref_norm.clamp_min(tiny)),
        "norm_ratio": float(est_norm / ref_norm.clamp_min(tiny)),
    }


class GradientQuality:
    """Scheduled comparisons against BP; ``summary()`` is the RESULTS.md ``gradient_quality`` object."""

    def __init__(self, every: int | None) -> None:
        self.every = every
        self.points: list[dict[str, float]] = []
        self._bp: Estimator = get_estimator("bp")

    def due(self, step: int) -> bool:
        return bool(self.every) and step % int(self.every) == 0

    def measure(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor], inputs: torch.Tensor,
                targets: torch.Tensor, step: int) -> dict[str, float]:
        """Compare the ``.grad`` the estimator just wrote with BP's gradient; leaves the model as it was."""
        params = [p for p in model.parameters() if p.requires_grad]
        kept = [p.grad for p in params]
        estimate = flat_grad(params)
        buffers = [b.detach().clone() for b in model.buffers()]
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            self._bp.estimate(model, loss_fn, inputs, targets)
            reference = flat_grad(params)
        finally:
            for p, g in zip(params, kept, strict=True):
                p.grad = g
            with torch.no_grad():
                for b, saved in zip(model.buffers(), buffers, strict=True):
                    b.copy_(saved)
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        point = {"step": int(step), **compare(estimate, reference)}
        self.points.append(point)
        return point

    def summary(self) -> dict[str, Any]:
        def mean(key: str) -> float | None:
            return sum(p[key] for p in self.points) / len(self.points) if self.points else None

        return {"every": self.every, "points": list(self.points), "mean_cosine": mean("cosine"),
                "mean_relative_error": mean("relative_error"), "mean_norm_ratio": mean("norm_ratio")}
