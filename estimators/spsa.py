"""SPSA / MeZO: two-point zeroth-order estimate with in-place perturbations regenerated from seeds."""

from __future__ import annotations

import torch
from torch import nn

from .base import Estimator, LossFn, Option, trainable_parameters
from .es import RESTORE_OPTION, weight_noise_estimate
from .perturbation import mean_loss
from .registry import register_estimator
from .seeding import counter_seed


@register_estimator
class SPSA(Estimator):
    """ĝ = (1/n) Σ_d (L(θ + εz_d) − L(θ − εz_d))/(2ε) · z_d, z_d ~ N(0, I) regenerated from its seed.

    Unbiased for ∇ E_z[L(θ + εz)] (the ε-smoothed loss); variance grows with the number of parameters.
    θ is moved in place (θ+εz → θ−εz → θ), z is never stored: memory = inference (+ one parameter backup
    with restore=copy). It is ES with antithetic pairs, σ = ε and K = 2n (``weight_noise_estimate``).
    """

    name = "spsa"
    noise_scope = "weight"
    copies_option = "directions"
    description = "SPSA / MeZO: two-point finite differences along n random directions, in-place and seed-regenerated"
    options = {
        "eps": Option(1e-3, "float", "ε: perturbation scale of the two-point difference", exclusive_minimum=0.0),
        "directions": Option(1, "int", "n: random directions z per step (2n perturbed forward passes)", minimum=1),
        "restore": RESTORE_OPTION,
    }

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        params = [p for _, p in trainable_parameters(model)]
        seed, step = self.opts["seed"], self.step
        rng_seed = counter_seed(seed, step, -1)
        clean = mean_loss(model, loss_fn, inputs, targets, rng_seed)
        logs = weight_noise_estimate(
            model, loss_fn, inputs, targets, params,
            direction_seeds=[counter_seed(seed, step, d) for d in range(self.opts["directions"])],
            sigma=self.opts["eps"], antithetic=True, baseline=0.0, restore=self.opts["restore"], rng_seed=rng_seed)
        return clean, {"forward_passes": self.forward_passes_per_step(model, inputs.shape[0]), **logs}

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """2n perturbed passes + 1 clean pass (the returned loss)."""
        return float(2 * self.opts["directions"] + 1)
