"""ES: weight-noise likelihood ratio (evolution strategies), perturbations regenerated from seeds."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import (
    Estimator,
    EstimatorError,
    LossFn,
    Option,
    trainable_parameters,
)
from .perturbation import RESTORE_MODES, InPlacePerturbation, frozen_buffers, mean_loss, write_direction_sum
from .registry import register_estimator
from .seeding import counter_seed

RESTORE_OPTION = Option("copy", "choice",
                        "how perturbed parameters are put back: copy = exact (one backup of the parameters), "
                        "subtract = MeZO's in-place undo (memory = inference, ulp-level drift)",
                        choices=RESTORE_MODES)


def weight_noise_estimate(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                          params: Sequence[torch.Tensor], *, direction_seeds: Sequence[int], sigma: float,
                          antithetic: bool, baseline: float, restore: str, rng_seed: int) -> dict[str, float]:
    """Write ĝ = (1/K) Σ_k (ℓ_k − b)·E_k/σ into ``.grad``, with ℓ_k = L(θ + σE_k) the batch-mean loss.

    E_j ~ N(0, I) is regenerated from ``direction_seeds[j]``. Without ``antithetic`` K = #seeds and
    E_k = E_{seed k}; with it every seed gives a pair (E_j, −E_j), K = 2·#seeds, and the pair contributes
    (ℓ(θ+σE_j) − ℓ(θ−σE_j))/(σK)·E_j — b cancels (this is SPSA/MeZO's two-point estimate). ĝ is unbiased
    for ∇_θ E_E[L(θ + σE)] (Stein's lemma). Parameters are perturbed in place and restored; running
    statistics are left as the clean pass set them; dropout draws the same masks in every pass.
    """
    signs = (1.0, -1.0) if antithetic else (1.0,)
    n_copies = len(direction_seeds) * len(signs)
    coefs = []
    losses = []
    with frozen_buffers(model), InPlacePerturbation(params, restore) as perturbation:
        for seed in direction_seeds:
            coef = 0.0
            for sign in signs:
                perturbation.set(seed, sign * sigma)
                loss = float(mean_loss(model, loss_fn, inputs, targets, rng_seed))
                losses.append(loss)
                coef += sign * (loss - baseline) / (sigma * n_copies)
            coefs.append(coef)
        backup_bytes = perturbation.backup_bytes
    write_direction_sum(params, direction_seeds, coefs)
    spread = torch.tensor(losses, dtype=torch.float64)
    return {"perturbed_loss_mean": float(spread.mean()),
            "perturbed_loss_std": float(spread.std()) if len(losses) > 1 else 0.0,
            "param_backup_bytes": float(backup_bytes), "noise_bytes": 0.0}


@register_estimator
class EvolutionStrategies(Estimator):
    """Weight-noise LR: θ̃_k = θ + σE_k, ĝ = (1/K) Σ_k (ℓ_k − b)·E_k/σ (see ``weight_noise_estimate``)."""

    name = "es"
    noise_scope = "weight"
    copies_option = "copies"
    description = "evolution strategies / weight-noise likelihood ratio: score-function estimate over K perturbed copies of the weights"
    options = {
        "copies": Option(16, "int", "K: perturbed copies of the weights (forward passes) per step", minimum=1),
        "sigma": Option(1e-3, "float", "σ: standard deviation of the weight noise", exclusive_minimum=0.0),
        "antithetic": Option(False, "bool", "pair copies E, −E (two-sided differences); copies must be even"),
        "baseline": Option("clean", "choice", "b subtracted from each copy's loss: clean = the noise-free loss, "
                           "none = 0", choices=("none", "clean")),
        "restore": RESTORE_OPTION,
    }

    def check_options(self) -> None:
        if self.opts["antithetic"] and self.opts["copies"] % 2:
            raise EstimatorError(f"option 'copies' must be even with antithetic=true, got {self.opts['copies']}")

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        params = [p for _, p in trainable_parameters(model)]
        seed, step, copies = self.opts["seed"], self.step, self.opts["copies"]
        rng_seed = counter_seed(seed, step, -1)
        clean = mean_loss(model, loss_fn, inputs, targets, rng_seed)
        n_dirs = copies // 2 if self.opts["antithetic"] else copies
        logs = weight_noise_estimate(
            model, loss_fn, inputs, targets, params,
            direction_seeds=[counter_seed(seed, step, j) for j in range(n_dirs)], sigma=self.opts["sigma"],
            antithetic=self.opts["antithetic"], baseline=float(clean) if self.opts["baseline"] == "clean" else 0.0,
            restore=self.opts["restore"], rng_seed=rng_seed)
        return clean, {"forward_passes": self.forward_passes_per_step(model, inputs.shape[0]), **logs}

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """K perturbed passes + 1 clean pass (the returned loss and the baseline)."""
        return float(self.opts["copies"] + 1)
