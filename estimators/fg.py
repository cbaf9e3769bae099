"""FG: forward gradient, ĝ = (∇L·v) v from forward-mode directional derivatives (torch.func.jvp)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call, jvp

from .base import Estimator, LossFn, Option, trainable_parameters
from .perturbation import directions, mean_loss
from .registry import register_estimator
from .seeding import counter_seed, fixed_global_randomness


@register_estimator
class ForwardGradient(Estimator):
    """ĝ = (1/n) Σ_d (∇_θL · v_d) v_d with v_d ~ N(0, I) over all trainable parameters.

    ∇_θL·v_d is one forward-mode pass: ``torch.func.jvp`` of θ ↦ L(functional_call(model, θ)) with tangent
    v_d; no backward pass, no stored activations. Unbiased (E[vvᵀ] = I) with E‖ĝ‖² = (d+2)/n·‖∇L‖² +
    (n−1)/n·‖∇L‖² for d parameters (d+2 at n = 1). Running statistics are updated by one clean pass only;
    dropout draws the same masks in every pass. ``forward_passes`` counts jvp passes (each carries a
    tangent, ≈ 2-3× the FLOPs of a plain forward).
    """

    name = "fg"
    noise_scope = "weight"
    copies_option = "directions"
    description = "forward gradient: (∇L·v)v from forward-mode jvp along n Gaussian directions"
    options = {
        "directions": Option(1, "int", "n: random tangent directions v (jvp passes) per step", minimum=1),
    }

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        named = trainable_parameters(model)
        names = [n for n, _ in named]
        params = [p for _, p in named]
        n_dirs, seed, step = self.opts["directions"], self.opts["seed"], self.step
        rng_seed = counter_seed(seed, step, -1)
        primals = {n: p.detach() for n, p in named}

        def loss_at(theta: dict[str, torch.Tensor]) -> torch.Tensor:
            return loss_fn(functional_call(model, theta, (inputs,)), targets).mean()

        tracking = _running_stat_modules(model)
        clean = mean_loss(model, loss_fn, inputs, targets, rng_seed) if tracking else None
        grads = [torch.zeros_like(p) for p in params]
        derivs = []
        with _batch_statistics_only(tracking):
            for d in range(n_dirs):
                tangent = list(directions(params, counter_seed(seed, step, d)))
                with fixed_global_randomness(rng_seed, inputs.device):
                    loss, deriv = jvp(loss_at, (primals,), (dict(zip(names, tangent, strict=True)),))
                if clean is None:
                    clean = loss.detach()
                derivs.append(float(deriv))
                for g, v in zip(grads, tangent, strict=True):
                    g.add_(v, alpha=derivs[-1] / n_dirs)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        dd = torch.tensor(derivs, dtype=torch.float64)
        return clean, {"forward_passes": self.forward_passes_per_step(model, inputs.shape[0]),
                       "directional_derivative_rms": float(dd.pow(2).mean().sqrt()), "noise_bytes": 0.0}

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """n forward-mode (jvp) passes, + 1 clean pass when the model tracks running statistics."""
        return float(self.opts["directions"] + (1 if _running_stat_modules(model) else 0))


def _running_stat_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that update running statistics in this forward (training-mode BatchNorm & co)."""
    return [m for m in model.modules() if m.training and getattr(m, "track_running_stats", False)]


@contextlib.contextmanager
def _batch_statistics_only(modules: list[nn.Module]) -> Iterator[None]:
    """Let ``modules`` normalise with batch statistics without updating their running statistics.

    A function transformed by ``torch.func.jvp`` may not mutate captured buffers; the running statistics
    are updated once, by the clean pass, as in one BP step.
    """
    for m in modules:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in modules:
            m.track_running_stats = True
