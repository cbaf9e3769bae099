"""Block-local likelihood ratio: noise at block outputs only, ordinary backprop inside each block.

ULR's computation-flow rearrangement. The model is an ``nn.Sequential`` of blocks f_1 … f_M, grouped into
*units* of ``group`` consecutive blocks; the last ``bp_blocks`` blocks form a plain-BP tail. With K noisy
copies of every sample (rows r = i·K + k, N = B·K) a single pass computes

    h_0 = x,   h_u = F_u(h_{u−1}) + σ·ε_u     for every LR unit u owning trainable parameters
    ℓ_r = loss(T(h_U), y)                       T = the BP tail (identity when bp_blocks = 0)

with ε_u drawn from the noise law (unit variance, one draw per row and output element). The estimated
objective is the noise-smoothed loss J(θ) = E_ε[(1/B) Σ_i ℓ_i] and

    LR unit u:  ĝ_u = J_{θ_u}F_u(h_{u−1})ᵀ [ (ℓ − b) ⊙ score(ε_u) / (σ·N) ]
    BP tail:    ĝ_T = ∇_{θ_T} (1/N) Σ_r ℓ_r

are both unbiased for ∇J (the first by the likelihood-ratio identity E[ℓ·score(ε)/σ] = ∂E[ℓ]/∂F_u, the
second pathwise, since the noise does not depend on θ_T). Each unit's vector–Jacobian product is ONE
backward through that unit alone: its input is detached, so no gradient crosses a unit boundary (the
"localized module training" of the ULR paper), and the tail's backward stops at its input.
Baselines b (independent of the row's own noise, so the estimate stays unbiased): ``none`` 0, ``clean``
the sample's noise-free loss, ``loo`` the mean loss of the sample's other K − 1 copies. ``antithetic``
pairs copies (ε, −ε), which cancels any per-sample baseline: it therefore takes ``baseline=none``.

Compared with module-level ULR (noise on every parametric module, closed-form per-module rules) this
needs each unit's activations for its local backward (BP-like memory for that unit, ×K rows) and has
one noise source per unit instead of per module, so its variance does not grow with the number of
modules inside a block. Dropout and other global-RNG draws are keyed on (seed, step) by the
``Estimator.estimate`` template, so the same seed gives the same gradient. Train-mode BatchNorm couples the rows of a pass and is refused (use eval-mode
BatchNorm, or module-level ULR). This module depends on torch only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import Estimator, EstimatorError, LossFn, Option
from .noise import NOISE_LAWS
from .registry import register_estimator
from .seeding import counter_seed, generator


@dataclass
class Unit:
    """Consecutive blocks trained together: by LR from the noise at their output, or by BP (the tail)."""

    blocks: nn.Sequential
    trainable: bool
    tail: bool


def split_units(model: nn.Module, group: int, bp_blocks: int) -> list[Unit]:
    """Units of ``group`` consecutive blocks, then the BP tail of the last ``bp_blocks`` blocks."""
    if not isinstance(model, nn.Sequential):
        raise EstimatorError(f"estimator 'ulr-block' needs an nn.Sequential of blocks, got {type(model).__name__}; "
                             "use ulr (module-level noise) for other models")
    blocks = list(model)
    if bp_blocks >= len(blocks):
        raise EstimatorError(f"option 'bp_blocks'={bp_blocks} must be smaller than the model's {len(blocks)} "
                             "blocks (use estimator bp for all-BP training)")
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise EstimatorError(f"estimator 'ulr-block': module '{name}' is a train-mode BatchNorm, which couples "
                                 "the rows of a pass; put it in eval mode or use ulr")
    lr_part, tail = blocks[:len(blocks) - bp_blocks], blocks[len(blocks) - bp_blocks:]
    units = []
    for start in range(0, len(lr_part), group):
        members = nn.Sequential(*lr_part[start:start + group])
        units.append(Unit(members, any(p.requires_grad for p in members.parameters()), tail=False))
    if tail:
        members = nn.Sequential(*tail)
        units.append(Unit(members, any(p.requires_grad for p in members.parameters()), tail=True))
    return units


def per_sample_baseline(losses: torch.Tensor, clean: torch.Tensor, copies: int, kind: str) -> torch.Tensor:
    """b per row (rows r = i·K + k): 0, the clean loss of sample i, or (Σ_{k'≠k} ℓ_ik')/(K − 1)."""
    if kind == "clean":
        return clean.repeat_interleave(copies)
    if kind == "loo":
        table = losses.view(-1, copies)
        return ((table.sum(1, keepdim=True) - table) / (copies - 1)).reshape(-1)
    return torch.zeros_like(losses)


@register_estimator
class BlockLocalLikelihoodRatio(Estimator):
    """ULR with noise at unit (block-group) outputs and backprop inside each unit; optional BP tail."""

    name = "ulr-block"
    description = ("likelihood ratio with noise at block outputs only and backprop inside each block "
                   "(block-local training; optional plain-BP tail)")
    noise_scope = "sample"
    copies_option = "copies"
    options = {
        "copies": Option(16, "int", "K: noisy copies per sample", minimum=1),
        "sigma": Option(0.01, "float", "σ: scale of the noise added to each unit's output", exclusive_minimum=0.0),
        "group": Option(1, "int", "consecutive blocks per LR unit (noise only at each unit's output)", minimum=1),
        "bp_blocks": Option(0, "int", "last blocks trained by plain backprop from the loss (0: none)", minimum=0),
        "baseline": Option("none", "choice", "control variate b in (ℓ − b): none, clean, loo",
                           choices=("none", "clean", "loo")),
        "antithetic": Option(False, "bool", "adjacent copies get ε and −ε (needs an even number of copies)"),
        "noise": Option("gaussian", "choice", "noise law (unit variance)", choices=tuple(NOISE_LAWS)),
    }

    def check_options(self) -> None:
        o = self.opts
        if o["antithetic"] and o["copies"] % 2:
            raise EstimatorError(f"option 'copies' must be even with antithetic=true, got {o['copies']}")
        if o["antithetic"] and o["baseline"] != "none":
            raise EstimatorError("antithetic pairs cancel any per-sample baseline; use baseline=none with "
                                 "antithetic=true")
        if o["baseline"] == "loo" and o["copies"] < 2:
            raise EstimatorError("baseline=loo needs copies >= 2")

    def _noise(self, unit: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """ε of one unit for all N rows, keyed on (seed, step, unit); antithetic rows 2j+1 = −(rows 2j)."""
        law = NOISE_LAWS[self.opts["noise"]]
        gen = generator(counter_seed(self.opts["seed"], self.step, unit), like.device)
        if not self.opts["antithetic"]:
            return law.sample(shape, gen, like.dtype, like.device)
        half = law.sample((shape[0] // 2, *shape[1:]), gen, like.dtype, like.device)
        return torch.stack((half, -half), dim=1).reshape(shape)

    def _noisy_pass(self, units: list[Unit], loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor
                    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """The K-copy pass: per-row losses ℓ, each LR unit's output F_u (with its local graph) and noise ε_u,
        and the BP tail's mean loss (with its graph; None without a trainable tail)."""
        copies, sigma = self.opts["copies"], self.opts["sigma"]
        h = inputs.repeat_interleave(copies, 0)
        rows_targets = targets.repeat_interleave(copies, 0)
        outputs: list[torch.Tensor] = []
        noises: list[torch.Tensor] = []
        for index, unit in enumerate(units):
            if unit.tail:
                losses = loss_fn(unit.blocks(h.detach()), rows_targets)
                return losses, outputs, noises, losses.mean() if unit.trainable else None
            if not unit.trainable:
                with torch.no_grad():
                    h = unit.blocks(h)
                continue
            out = unit.blocks(h.detach())  # the unit's input is detached: no gradient crosses into it
            eps = self._noise(index, tuple(out.shape), out)
            outputs.append(out)
            noises.append(eps)
            h = out.detach() + sigma * eps
        return loss_fn(h, rows_targets), outputs, noises, None

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.opts
        units = split_units(model, o["group"], o["bp_blocks"])
        rows = inputs.shape[0] * o["copies"]
        with torch.no_grad():
            clean = loss_fn(model(inputs), targets).detach()
        with torch.enable_grad():
            losses, outputs, noises, tail_loss = self._noisy_pass(units, loss_fn, inputs, targets)
            losses = losses.detach()
            weights = (losses - per_sample_baseline(losses, clean, o["copies"], o["baseline"])) / (o["sigma"] * rows)
            score = NOISE_LAWS[o["noise"]].score
            roots: list[torch.Tensor] = list(outputs)
            cotangents = [score(e) * weights.view(-1, *[1] * (e.dim() - 1)) for e in noises]
            if tail_loss is not None:
                roots.append(tail_loss)
                cotangents.append(torch.ones_like(tail_loss))
            if roots:  # one backward; the graphs of the units are disjoint
                torch.autograd.backward(roots, cotangents)
        return clean.mean(), {"forward_passes": self.forward_passes_per_step(model, inputs.shape[0]),
                              "rows": float(rows), "noisy_units": float(len(outputs))}

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """1 clean pass (the returned loss, and the clean baseline) + K noisy copies of the whole network.
        The local backwards are not forward passes; FLOP counts include them."""
        return 1.0 + float(self.opts["copies"])

    def describe_units(self, model: nn.Module) -> list[dict[str, Any]]:
        """For reports and tests: each unit's blocks, whether it is LR- or BP-trained."""
        units = split_units(model, self.opts["group"], self.opts["bp_blocks"])
        return [{"blocks": len(u.blocks), "trains": ("bp" if u.tail else "lr") if u.trainable else "none"}
                for u in units]
