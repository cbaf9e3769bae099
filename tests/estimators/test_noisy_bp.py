"""bp-noise: backprop through ULR's output noise targets the same smoothed loss as ULR (global injection)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrbench.estimators import get_estimator
from tests.helpers.lr_estimates import bp_gradient, cross_entropy, flat_grad, mlp, mlp_batch


def _samples(name: str, n: int, **opts) -> torch.Tensor:
    model = mlp()
    x, y = mlp_batch()
    est = get_estimator(name, seed=11, **opts)
    out = []
    for _ in range(n):
        est.estimate(model, cross_entropy, x, y)
        out.append(flat_grad(model).clone())
    return torch.stack(out)


@pytest.mark.parametrize("noise", ["gaussian", "laplace"])
def test_same_smoothed_gradient_as_ulr_and_not_bp(noise: str) -> None:
    """Two-sample z per element between the means of bp-noise and ULR (global injection, unbiased for
    ∇E_ε[L], tests/estimators/test_ulr.py): mean z² ≈ 1; against BP's gradient it is far above 1."""
    sigma = 0.4
    noisy = _samples("bp-noise", 300, copies=4, sigma=sigma, noise=noise)
    ulr = _samples("ulr", 300, copies=16, sigma=sigma, noise=noise, baseline="clean")
    se = (noisy.var(0) / len(noisy) + ulr.var(0) / len(ulr)).sqrt()
    z = (noisy.mean(0) - ulr.mean(0)) / se
    assert 0.6 < float((z ** 2).mean()) < 1.5
    bp = bp_gradient(mlp(), cross_entropy, *mlp_batch())
    z_bp = (noisy.mean(0) - bp) / (noisy.std(0) / math.sqrt(len(noisy)))
    assert float((z_bp ** 2).mean()) > 10.0


def test_same_seed_same_gradient_and_clean_loss() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.2), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = mlp_batch()
    runs = []
    for k in range(2):
        torch.manual_seed(k)
        loss, logs = get_estimator("bp-noise", sigma=0.5, copies=2, seed=4).estimate(model, cross_entropy, x, y)
        runs.append((loss, flat_grad(model).clone()))
    assert torch.equal(runs[0][1], runs[1][1])
    assert torch.equal(runs[0][0], runs[1][0]) and not runs[0][0].requires_grad
    assert logs["forward_passes"] == 3.0
