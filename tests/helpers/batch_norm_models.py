"""Train-mode BatchNorm test models (issue 13), the statistics-detached BP reference built independently,
a per-tensor z² of a Monte-Carlo mean, and the variance-cost measurement of the two ``batch_norm`` modes.

Run as a script to print the relative MSE table quoted in docs/ESTIMATORS.md ("Train-mode BatchNorm")::

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.helpers.batch_norm_models [estimates]
"""

from __future__ import annotations

import copy
import math
import sys

import torch
from torch import nn

from lrbench.estimators import get_estimator
from tests.helpers.lr_estimates import bp_gradient, cross_entropy, flat_grad

ISSUE_OPTS = {"copies": 64, "sigma": 0.01, "injection": "layerwise", "baseline": "clean"}


def bn_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Linear(8→12) → BatchNorm1d → tanh → Linear(→5), batch 16, float64, training mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(8, 12), nn.BatchNorm1d(12), nn.Tanh()), nn.Linear(12, 5))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8, generator=gen, dtype=torch.float64)
    return model.double().train(), x, torch.randint(0, 5, (16,), generator=gen)


def bn_conv() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Conv2d(2→3, 3×3) → BatchNorm2d → tanh → Conv2d(3→3) → BatchNorm2d → tanh → Linear(→4), batch 16."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh()),
                          nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh()),
                          nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 4)))
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 2, 4, 4, generator=gen, dtype=torch.float64)
    return model.double().train(), x, torch.randint(0, 4, (16,), generator=gen)


def detached_statistics_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BP of the batch loss with BatchNorm's batch mean and (biased) variance held constant, built
    "running stats" style: a copy in eval mode whose running statistics are the batch's."""
    twin = copy.deepcopy(model)
    norms = [m for m in twin.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    seen: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda m, args: seen.__setitem__(id(m), args[0].detach()))
               for m in norms]
    with torch.no_grad():
        twin(x)
    for h in handles:
        h.remove()
    with torch.no_grad():
        for m in norms:
            inp = seen[id(m)]
            dims = [0, *range(2, inp.dim())]
            m.running_mean.copy_(inp.mean(dims))
            m.running_var.copy_(inp.var(dims, unbiased=False))
    twin.eval()
    loss = cross_entropy(twin(x), y).mean()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(twin.parameters()))])


def z_squared(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reference: torch.Tensor, estimates: int,
              name: str = "ulr", **opts) -> dict[str, float]:
    """Per parameter tensor: mean over its elements of ((mean estimate − reference) / standard error)²
    over ``estimates`` independent estimates (seeds); ≈ 1 when the estimator is unbiased for ``reference``."""
    table = estimates_of(model, x, y, estimates, name, **opts)
    mean, error = table.mean(0), table.std(0) / math.sqrt(estimates)
    out, start = {}, 0
    for pname, p in model.named_parameters():
        part = slice(start, start + p.numel())
        start += p.numel()
        out[pname] = float((((mean[part] - reference[part]) / error[part]) ** 2).mean())
    return out



def estimates_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int, name: str = "ulr",
                 **opts) -> torch.Tensor:
    """``count`` independent estimates (seeds 0..count−1), one row each; parameters and buffers restored."""
    state = copy.deepcopy(model.state_dict())
    draws = []
    for seed in range(count):
        model.load_state_dict(state)
        get_estimator(name, seed=seed, **opts).estimate(model, cross_entropy, x, y)
        draws.append(flat_grad(model).clone())
    model.load_state_dict(state)
    return torch.stack(draws)


def measure_cost(estimates: int = 100, copies: tuple[int, ...] = (16, 64, 256)) -> list[dict]:
    """Relative MSE (1/S) Σ_s ‖ĝ_s − g‖² / ‖g‖² against BP's g for both modes at the same K (ULR,
    layer-wise, clean baseline, σ = 0.01), split into squared bias ‖ḡ − g‖²/‖g‖² and variance."""
    rows = []
    for label, build in (("mlp-bn1d", bn_mlp), ("conv-bn2d", bn_conv)):
        model, x, y = build()
        g = bp_gradient(model, cross_entropy, x, y)
        norm2 = float(g.norm() ** 2)
        for k in copies:
            for mode in ("coupled", "rowwise"):
                table = estimates_of(model, x, y, estimates, **{**ISSUE_OPTS, "copies": k, "batch_norm": mode})
                mse = float(((table - g) ** 2).sum(1).mean()) / norm2
                variance = float(((table - table.mean(0)) ** 2).sum(1).mean()) / norm2
                bias2 = mse - variance * estimates / (estimates - 1)      # ‖ḡ − g‖² less the mean's own variance
                rows.append({"model": label, "copies": k, "mode": mode, "mse": mse, "bias2": bias2,
                             "variance": variance})
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for r in measure_cost(count):
        print(f"{r['model']:10s} K={r['copies']:4d} {r['mode']:8s} rel.MSE {r['mse']:.4g}  bias² {r['bias2']:.4g}  "
              f"variance {r['variance']:.4g}")
