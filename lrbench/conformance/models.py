"""The small float64 models the conformance check runs on: one of each family, built by the same
factories as the benchmark's tasks (so they have the block structure every estimator must handle),
plus a model with a parameter no per-module rule knows (what "an unsupported model" looks like).

All are tiny (about 100-200 parameters, 4×4 single-channel inputs, 3 classes, batch 8), so that
hundreds of estimates per family fit in seconds on one core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrbench.tasks.models import build_mlp, build_plain_cnn, build_row_rnn, build_vit

INPUT_SHAPE = (1, 4, 4)
CLASSES = 3
BATCH = 8
MEAN, STD = (0.5,), (0.25,)

#: family -> (factory, options): the smallest models of the task families that keep their structure
FAMILIES: dict[str, tuple[Callable[..., nn.Sequential], dict[str, Any]]] = {
    "mlp": (build_mlp, {"widths": (6,), "activation": "tanh"}),
    "cnn": (build_plain_cnn, {"channels": (2, 3), "kernel": 3, "activation": "tanh"}),
    "rnn": (build_row_rnn, {"cell": "gru", "hidden": 4, "activation": "tanh"}),
    "vit": (build_vit, {"patch": 2, "dim": 4, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "activation": "gelu"}),
}


@dataclass
class Problem:
    """One model with its batch and per-sample loss (``loss_fn(outputs, targets) -> (N,)``)."""

    family: str
    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor

    @staticmethod
    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets, reduction="none")

    @property
    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def clean_loss(self) -> torch.Tensor:
        """(1/B) Σ_i ℓ_i of the noise-free model (no graph)."""
        with torch.no_grad():
            return self.loss_fn(self.model(self.inputs), self.targets).mean()

    def autograd_gradient(self) -> torch.Tensor:
        """∇_θ (1/B) Σ_i ℓ_i by ``torch.autograd.grad``, flattened over the trainable parameters (float64)."""
        params = [p for _, p in self.parameters]
        with torch.enable_grad():
            loss = self.loss_fn(self.model(self.inputs), self.targets).mean()
            grads = torch.autograd.grad(loss, params)
        return torch.cat([g.reshape(-1) for g in grads]).detach()


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.rand(BATCH, *INPUT_SHAPE, generator=gen, dtype=torch.float64)
    return inputs, torch.randint(0, CLASSES, (BATCH,), generator=gen)


def family_problem(family: str, seed: int = 0) -> Problem:
    """The float64 model of ``family`` (initialised from ``seed``) with a seeded random batch."""
    factory, options = FAMILIES[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(INPUT_SHAPE, CLASSES, MEAN, STD, **options).double()
    return Problem(family, model, *_batch(seed + 1))


class Rescale(nn.Module):
    """y = x ⊙ w with a free parameter w: a parametric module that is not in any estimator's rule table."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, features, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def unsupported_problem(seed: int = 0) -> Problem:
    """Flatten · Linear · Rescale · Linear: estimators with per-module rules must refuse it (one line) or
    handle it correctly (weight-space methods and autograd-based ones do)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = INPUT_SHAPE[1] * INPUT_SHAPE[2]
        model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(features, 5), nn.Tanh(), Rescale(5)),
                              nn.Linear(5, CLASSES)).double()
    return Problem("custom", model, *_batch(seed + 1))
