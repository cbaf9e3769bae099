"""ulr-block (block-local LR): unbiased for the gradient of the loss smoothed by noise at unit outputs,
the 1/√n rate, BP-within-a-unit equal to the closed-form module rule, and its one-line refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrbench.estimators import EstimatorError, get_estimator
from lrbench.estimators.block_lr import split_units
from lrbench.estimators.rules import linear_rule
from tests.helpers.lr_estimates import bp_gradient, cross_entropy, flat_grad, mlp, mlp_batch

SIGMA = 0.3  # large enough that the smoothed gradient is far from BP's (the test tells the two apart)


def smoothed_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, group: int = 1,
                      bp_blocks: int = 0, draws: int = 40000, seed: int = 123) -> torch.Tensor:
    """∇_θ E_ε[(1/B) Σ_i ℓ_i] by the pathwise (reparameterised) gradient, averaged over ``draws`` noise
    draws per sample: autograd through h_u = F_u(h_{u−1}) + σε_u with nothing detached. Its Monte-Carlo
    error is O(1/√draws) with an O(1) constant, far below the LR estimates' O(1/σ) one."""
    units = split_units(model, group, bp_blocks)
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = None
    h = x.repeat_interleave(draws, 0)
    for unit in units:
        h = unit.blocks(h)
        if not unit.tail and unit.trainable:
            h = h + sigma * torch.randn(h.shape, generator=gen, dtype=h.dtype)
    cross_entropy(h, y.repeat_interleave(draws, 0)).mean().backward()
    return flat_grad(model).clone()


def estimates(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, **opts) -> torch.Tensor:
    est = get_estimator("ulr-block", sigma=SIGMA, seed=7, **opts)
    rows = []
    for _ in range(n):
        est.estimate(model, cross_entropy, x, y)
        rows.append(flat_grad(model).clone())
    return torch.stack(rows)


@pytest.mark.parametrize(("opts", "tells_bp_apart"), [({"copies": 8, "baseline": "clean"}, True),
                                                     ({"copies": 8, "baseline": "loo", "bp_blocks": 1}, True),
                                                     ({"copies": 8, "antithetic": True, "group": 2}, False)],
                         ids=["clean", "loo+bp-tail", "antithetic+group2"])
def test_mean_is_the_smoothed_gradient_within_monte_carlo_error(opts: dict, tells_bp_apart: bool) -> None:
    """Per-element z = (mean − g_σ)/(sd/√n): mean z² ≈ 1 (its sd is √(2/d) ≈ 0.1 for d ≈ 200 elements).
    With noise only at the logits (group=2 leaves one unit before the output) smoothing moves the gradient
    less than the Monte-Carlo error, so only the first two cases can also reject BP's gradient."""
    torch.manual_seed(0)
    model = mlp()
    x, y = mlp_batch()
    n = 400
    samples = estimates(model, x, y, n, **opts)
    reference = smoothed_gradient(model, x, y, SIGMA, opts.get("group", 1), opts.get("bp_blocks", 0))
    z = (samples.mean(0) - reference) / (samples.std(0) / math.sqrt(n))
    assert 0.6 < float((z ** 2).mean()) < 1.5
    # ... and that is a different target from BP's gradient, which the same test rejects:
    bp = bp_gradient(model, cross_entropy, x, y)
    z_bp = (samples.mean(0) - bp) / (samples.std(0) / math.sqrt(n))
    if tells_bp_apart:
        assert float((z_bp ** 2).mean()) > 3.0


@pytest.mark.slow
def test_relative_error_falls_like_one_over_sqrt_n() -> None:
    """‖mean_n − g_σ‖/‖g_σ‖ at n and 16n: ratio ≈ 4 (averaged over 4 disjoint replications)."""
    model = mlp()
    x, y = mlp_batch()
    reference = smoothed_gradient(model, x, y, SIGMA)
    samples = estimates(model, x, y, 16 * 64 * 4, copies=8, baseline="clean")
    small = [float((chunk.mean(0) - reference).norm()) for chunk in samples[:64 * 16].split(64)]
    large = [float((chunk.mean(0) - reference).norm()) for chunk in samples.split(64 * 16)]
    ratio = math.sqrt(sum(e * e for e in small) / len(small)) / math.sqrt(sum(e * e for e in large) / len(large))
    assert 2.8 < ratio < 5.5


def test_backprop_inside_a_unit_equals_the_closed_form_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a unit is one Linear, the unit's local backward of (ℓ − b)·ε/(σN) equals ``linear_rule``."""
    model = nn.Sequential(nn.Linear(6, 5), nn.Sequential(nn.Tanh(), nn.Linear(5, 3))).double()
    x, y = mlp_batch()
    est = get_estimator("ulr-block", copies=4, sigma=0.05, baseline="clean", seed=3)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_noise = type(est)._noise

    def recording_noise(self, unit, shape, like):
        eps = real_noise(self, unit, shape, like)
        seen.append((unit, eps))
        return eps

    monkeypatch.setattr(type(est), "_noise", recording_noise)
    est.estimate(model, cross_entropy, x, y)
    eps0, eps1 = seen[0][1], seen[1][1]
    with torch.no_grad():
        rows = x.repeat_interleave(4, 0)
        h1 = model[0](rows) + 0.05 * eps0
        losses = cross_entropy(model[1](h1) + 0.05 * eps1, y.repeat_interleave(4, 0))
        weights = (losses - cross_entropy(model(x), y).repeat_interleave(4)) / (0.05 * rows.shape[0])
        first = linear_rule(model[0], rows, eps0 * weights[:, None])
        second = linear_rule(model[1][1], torch.tanh(h1), eps1 * weights[:, None])
    torch.testing.assert_close(model[0].weight.grad, first["weight"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(model[0].bias.grad, first["bias"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(model[1][1].weight.grad, second["weight"], rtol=1e-12, atol=1e-14)


def test_same_seed_same_gradient_with_dropout() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.Tanh()), nn.Linear(8, 3)).double()
    x, y = mlp_batch()
    grads = []
    for _ in range(2):
        torch.manual_seed(len(grads))  # the global RNG differs between the two calls; the gradient must not
        get_estimator("ulr-block", copies=4, seed=5).estimate(model, cross_entropy, x, y)
        grads.append(flat_grad(model).clone())
    assert torch.equal(grads[0], grads[1])


def test_forward_passes_and_units() -> None:
    model = mlp()
    est = get_estimator("ulr-block", copies=8, group=2, bp_blocks=1)
    assert est.forward_passes_per_step(model, 8) == 9.0
    assert est.describe_units(model) == [{"blocks": 2, "trains": "lr"}, {"blocks": 1, "trains": "bp"}]


@pytest.mark.parametrize(("model", "opts", "message"), [
    (nn.Linear(6, 3), {}, "needs an nn.Sequential of blocks"),
    (nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)), {}, "train-mode BatchNorm"),
    (nn.Sequential(nn.Linear(6, 3)), {"bp_blocks": 1}, "must be smaller than the model's 1 blocks"),
])
def test_unsupported_models_are_refused_in_one_line(model: nn.Module, opts: dict, message: str) -> None:
    x, y = mlp_batch()
    with pytest.raises(EstimatorError, match=message):
        get_estimator("ulr-block", **opts).estimate(model.double(), cross_entropy, x, y)


@pytest.mark.parametrize(("opts", "message"), [
    ({"antithetic": True, "baseline": "clean"}, "use baseline=none with antithetic"),
    ({"antithetic": True, "copies": 3}, "must be even"),
    ({"baseline": "loo", "copies": 1}, "loo needs copies >= 2"),
])
def test_unsound_options_are_refused(opts: dict, message: str) -> None:
    with pytest.raises(EstimatorError, match=message):
        get_estimator("ulr-block", **opts)
