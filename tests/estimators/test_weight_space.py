"""ES, SPSA (MeZO) and forward gradients against autograd: Monte-Carlo convergence at the 1/√n rate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench.estimators import EstimatorError, get_estimator, list_estimators


def per_sample_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def mlp(dtype: torch.dtype = torch.float64, norm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(1)
    layers: list[nn.Module] = [nn.Linear(6, 5), nn.Tanh()]
    if norm:
        layers.append(nn.BatchNorm1d(5))
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(5, 3))
    return nn.Sequential(*layers).to(dtype)


def batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(16, 6, generator=gen, dtype=dtype), torch.randint(0, 3, (16,), generator=gen)


def flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def estimate(name: str, model: nn.Module | None = None, **opts) -> tuple[torch.Tensor, dict[str, float]]:
    model = model if model is not None else mlp()
    x, y = batch(next(model.parameters()).dtype)
    _, logs = get_estimator(name, **opts).estimate(model, per_sample_ce, x, y)
    return flat_grad(model), logs


TRUE_GRAD = None


def true_grad() -> torch.Tensor:
    global TRUE_GRAD
    if TRUE_GRAD is None:
        TRUE_GRAD, _ = estimate("bp")
    return TRUE_GRAD


def rel_error(g: torch.Tensor) -> float:
    return float((g - true_grad()).norm() / true_grad().norm())


D = sum(p.numel() for p in mlp().parameters())  # 53 parameters

# name, options at n directions (the estimate averages n independent directions), its count option
CONVERGENCE = [
    ("spsa", {"eps": 1e-4}, "directions", 1),
    ("fg", {}, "directions", 1),
    ("es", {"sigma": 1e-4, "baseline": "clean"}, "copies", 1),
    ("es", {"sigma": 1e-4, "antithetic": True}, "copies", 2),   # K = 2 copies per direction
]


@pytest.mark.parametrize(("name", "opts", "count", "per_dir"), CONVERGENCE)
def test_mean_converges_to_autograd_at_one_over_sqrt_n(name: str, opts: dict, count: str, per_dir: int) -> None:
    """rel. error of the n-direction mean ≈ √((d+1)/n) (d = 53): ratio n=64 vs 16n=1024 ≈ 4, ≥ 2.5.

    float64 and σ, ε = 1e-4: the smoothed-loss gradient differs from ∇L by O(σ²), far below the MC error.
    """
    err = {n: rel_error(estimate(name, **opts, **{count: n * per_dir}, seed=n)[0]) for n in (64, 1024)}
    theory = {n: ((D + 1) / n) ** 0.5 for n in err}
    assert err[64] / err[1024] >= 2.5, err
    for n in err:
        assert 0.6 * theory[n] < err[n] < 1.5 * theory[n], (err, theory)


def test_forward_gradient_second_moment_is_d_plus_2() -> None:
    """One direction: E‖ĝ‖² = (d+2)‖∇L‖²; the mean of 2000 single-direction estimates → ∇L."""
    model, x, y = mlp(), *batch()
    est = get_estimator("fg", directions=1, seed=3)
    total, second = torch.zeros(D, dtype=torch.float64), 0.0
    for _ in range(2000):
        est.estimate(model, per_sample_ce, x, y)
        g = flat_grad(model)
        total += g
        second += float(g.pow(2).sum())
    ratio = second / 2000 / float(true_grad().pow(2).sum())
    assert abs(ratio / (D + 2) - 1) < 0.12, (ratio, D + 2)
    assert rel_error(total / 2000) < 2.0 * ((D + 1) / 2000) ** 0.5


def test_es_baseline_matters_at_small_sigma() -> None:
    """Without a baseline the score term L(θ)·E/σ dominates: error at σ = 1e-2 is ≫ with baseline=clean."""
    with_clean = rel_error(estimate("es", sigma=1e-2, copies=256, baseline="clean")[0])
    without = rel_error(estimate("es", sigma=1e-2, copies=256, baseline="none")[0])
    assert with_clean < 1.0 and without > 20 * with_clean, (with_clean, without)


def test_spsa_is_es_antithetic() -> None:
    """SPSA with n directions = ES with antithetic pairs, K = 2n, σ = ε (the baseline cancels)."""
    g_spsa, _ = estimate("spsa", eps=1e-3, directions=8, seed=4)
    g_es, _ = estimate("es", sigma=1e-3, copies=16, antithetic=True, baseline="none", seed=4)
    g_es_clean, _ = estimate("es", sigma=1e-3, copies=16, antithetic=True, baseline="clean", seed=4)
    assert torch.equal(g_spsa, g_es)
    assert torch.allclose(g_es_clean, g_es, rtol=1e-9, atol=0)


@pytest.mark.parametrize(("name", "opts", "passes"), [
    ("es", {"copies": 6}, 7), ("es", {"copies": 6, "antithetic": True, "restore": "subtract"}, 7),
    ("spsa", {"directions": 3}, 7), ("spsa", {"directions": 3, "restore": "subtract"}, 7),
    ("fg", {"directions": 3}, 3),
])
def test_seeded_restored_and_replaced(name: str, opts: dict, passes: int) -> None:
    """Same seed → bit-identical; parameters restored (exactly with restore=copy); .grad replaced."""
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    g1, logs = estimate(name, model, seed=9, **opts)
    drift = max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before, strict=True))
    if opts.get("restore") == "subtract":
        assert 0 <= drift < 1e-14    # MeZO's undo: rounding only
        model = mlp()                # drifted by ulps: compare on fresh parameters
    else:
        assert drift == 0.0
    g2, _ = estimate(name, model, seed=9, **opts)        # fresh estimator: same step 0, grad replaced
    g3, _ = estimate(name, model, seed=10, **opts)
    assert torch.equal(g1, g2) and not torch.equal(g1, g3)
    assert logs["forward_passes"] == passes


@pytest.mark.parametrize(("name", "opts"), [("es", {"copies": 4}), ("spsa", {"directions": 2}),
                                            ("fg", {"directions": 2})])
def test_running_statistics_updated_once_like_bp(name: str, opts: dict) -> None:
    """BatchNorm running stats after one step equal BP's (one clean pass), not K-fold updated."""
    reference, model = mlp(norm=True), mlp(norm=True)
    x, y = batch()
    get_estimator("bp").estimate(reference, per_sample_ce, x, y)
    get_estimator(name, **opts).estimate(model, per_sample_ce, x, y)
    for a, b in zip(reference.buffers(), model.buffers(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert model[2].track_running_stats


def test_dropout_masks_shared_across_passes() -> None:
    """With dropout, SPSA's two-point differences use one mask: ĝ stays O(‖∇L‖), and is seeded."""
    model = mlp(dropout=0.5)
    g, _ = estimate("spsa", model, eps=1e-4, directions=256, seed=1)
    g_again, _ = estimate("spsa", model, eps=1e-4, directions=256, seed=1)
    assert torch.equal(g, g_again)
    assert float(g.norm()) < 10 * float(true_grad().norm())  # different masks would give ~1/ε blow-up


@pytest.mark.parametrize(("name", "opts"), [
    ("es", {"copies": 3, "antithetic": True}), ("es", {"sigma": 0}), ("es", {"baseline": "loo"}),
    ("spsa", {"directions": 0}), ("spsa", {"eps": -1}), ("spsa", {"restore": "never"}),
    ("fg", {"directions": "x"}), ("fg", {"sigma": 1.0}),
])
def test_bad_options_one_line_error(name: str, opts: dict) -> None:
    with pytest.raises(EstimatorError) as info:
        get_estimator(name, **opts)
    assert "\n" not in str(info.value)


def test_listed_with_options() -> None:
    listed = {e["name"]: e for e in list_estimators()}
    assert set(listed["es"]["options"]) >= {"copies", "sigma", "antithetic", "baseline", "seed"}
    assert set(listed["spsa"]["options"]) >= {"eps", "directions", "seed"}
    assert set(listed["fg"]["options"]) >= {"directions", "seed"}
    assert set(listed["xconv"]["options"]) >= {"probes", "probe_mode", "layers", "first_layer_exact", "seed"}
    assert all(listed[n]["description"] for n in ("es", "spsa", "fg", "xconv"))


@pytest.mark.parametrize("name", ("es", "spsa", "fg"))
def test_frozen_parameters_untouched(name: str) -> None:
    """Only trainable parameters are perturbed / get a tangent; frozen ones keep grad None and values."""
    model = mlp()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    x, y = batch()
    get_estimator(name).estimate(model, per_sample_ce, x, y)
    assert model[0].weight.grad is None and torch.equal(model[0].weight, frozen)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
