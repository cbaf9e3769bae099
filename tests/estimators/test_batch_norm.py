"""Train-mode BatchNorm under ULR/ALR (issue 13, defect 1).

``batch_norm=coupled``: the mean over estimates is within Monte-Carlo error of BP's gradient (z² ≈ 1
per parameter tensor); ``batch_norm=rowwise`` (default): within error of the statistics-detached BP
gradient (built here independently: eval mode with the running statistics set to the batch's), and far
outside BP's. Plus exact checks against an explicit-replica autograd reference and the refusals.

On commit 0997f7e (no ``batch_norm`` option; its only mode is today's rowwise) the coupled tests fail:
run with the option removed, z² of the first Linear weight is 14 (smoke, 40 estimates) / 91 (300) and
of the bias in front of BatchNorm 121 / 802 (BP's gradient of that bias is 0).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from lrbench.estimators import EstimatorError, get_estimator
from lrbench.estimators.batch_coupling import detached_batch_statistics, grouped_normalise
from tests.helpers.batch_norm_models import (
    ISSUE_OPTS,
    bn_conv,
    bn_mlp,
    detached_statistics_gradient,
    z_squared,
)
from tests.helpers.lr_estimates import bp_gradient, cross_entropy, flat_grad, reference_global_lr


def assert_within_monte_carlo_error(z2: dict[str, float], model: nn.Module) -> None:
    """Each tensor's z² (a mean of d squared t-scores, ≈ χ²_d/d when unbiased) below 1 + 5·√(2/d), and
    their mean over tensors near 1."""
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    assert all(v < 1 + 5 * math.sqrt(2 / sizes[n]) for n, v in z2.items()), z2
    assert 0.4 < sum(z2.values()) / len(z2) < 1.8, z2


# ----------------------------------------------------------------------------- fast
def test_coupled_is_within_monte_carlo_error_of_bp_smoke() -> None:
    """The issue's model and options, 40 estimates (0997f7e's row-wise estimate: z² 14 and 121)."""
    model, x, y = bn_mlp()
    z2 = z_squared(model, x, y, bp_gradient(model, cross_entropy, x, y), 40, **ISSUE_OPTS, batch_norm="coupled")
    assert_within_monte_carlo_error(z2, model)


def test_detached_statistics_context_is_the_running_stats_reference() -> None:
    model, x, y = bn_conv()
    buffers = [b.clone() for b in model.buffers()]
    with detached_batch_statistics(model):
        detached = bp_gradient(model, cross_entropy, x, y)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))   # stats untouched
    assert all("forward" not in m.__dict__ for m in model.modules())                       # restored
    torch.testing.assert_close(detached, detached_statistics_gradient(model, x, y), rtol=1e-10, atol=1e-13)
    coupled = bp_gradient(model, cross_entropy, x, y)
    assert (coupled - detached).norm() > 0.1 * coupled.norm()       # the two targets really differ


def test_grouped_normalise_equals_batchnorm_of_each_copy_group() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5 * 3, 4, 2, 2, generator=gen, dtype=torch.float64)
    w, b = torch.randn(4, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
    got = grouped_normalise(x, 3, w, b, 1e-5)
    for k in range(3):
        expected = nn.functional.batch_norm(x[k::3], None, None, w, b, True, 0.0, 1e-5)
        torch.testing.assert_close(got[k::3], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("baseline", ["none", "clean", "loo"])
@pytest.mark.parametrize("name", ["ulr", "alr"])
def test_coupled_equals_the_explicit_replica_autograd_reference(name: str, baseline: str) -> None:
    """batch_norm=coupled is the LR estimate of K separate replicas of the batch (each through the
    model's own BatchNorm), upstream rows weighted by their replica's loss (tests.helpers.lr_estimates)."""
    model, x, y = bn_conv()
    expected = reference_global_lr(model, cross_entropy, x, y, copies=4, sigma=0.05, seed=3, baseline=baseline,
                                   sign=name == "alr", batch_norm="coupled")
    get_estimator(name, copies=4, sigma=0.05, seed=3, baseline=baseline, batch_norm="coupled").estimate(
        model, cross_entropy, x, y)
    torch.testing.assert_close(flat_grad(model), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["ulr", "alr"])
def test_rowwise_equals_the_rowwise_autograd_reference(name: str) -> None:
    """batch_norm=rowwise is main's row-wise estimate: BatchNorm over every row in flight, own losses."""
    model, x, y = bn_conv()
    expected = reference_global_lr(model, cross_entropy, x, y, copies=4, sigma=0.05, seed=3, baseline="clean",
                                   sign=name == "alr", batch_norm="rowwise")
    get_estimator(name, copies=4, sigma=0.05, seed=3, baseline="clean", batch_norm="rowwise").estimate(
        model, cross_entropy, x, y)
    torch.testing.assert_close(flat_grad(model), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("opts", [{"baseline": "clean"}, {"baseline": "loo", "antithetic": True, "chunk": 64},
                                  {"copies": [2, 4, 6], "baseline": "clean", "chunk": 40}])
@pytest.mark.parametrize("mode", ["coupled", "rowwise"])
def test_prefix_sharing_equals_full_replay_with_train_batchnorm(mode: str, opts: dict) -> None:
    model, x, y = bn_conv()
    base = {"copies": 4, "sigma": 0.05, "seed": 2, "injection": "layerwise", "batch_norm": mode, **opts}
    state = copy.deepcopy(model.state_dict())
    get_estimator("ulr", **base).estimate(model, cross_entropy, x, y)
    replay = flat_grad(model).clone()
    model.load_state_dict(state)
    get_estimator("ulr", prefix_sharing=True, **base).estimate(model, cross_entropy, x, y)
    torch.testing.assert_close(flat_grad(model), replay, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["coupled", "rowwise"])
def test_chunk_that_splits_the_batch_is_refused_with_train_batchnorm(mode: str) -> None:
    model, x, y = bn_mlp()
    with pytest.raises(EstimatorError) as info:
        get_estimator("ulr", copies=8, chunk=8, batch_norm=mode).estimate(model, cross_entropy, x, y)
    assert "chunk >= 16" in str(info.value) and "\n" not in str(info.value)
    model.eval()                                       # running statistics: rows independent, chunks fine
    get_estimator("ulr", copies=8, chunk=8, batch_norm=mode).estimate(model, cross_entropy, x, y)


def test_batchnorm_over_reshaped_rows_is_refused_in_coupled_mode() -> None:
    class Tokens(nn.Module):                # (N, 2·4) -> (2N, 4): the BatchNorm sees 2 rows per sample
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, 4)

    class Back(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, 8)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), Tokens(), nn.BatchNorm1d(4, affine=False), Back(), nn.Linear(8, 5)).double().train()
    _, x, y = bn_mlp()
    with pytest.raises(EstimatorError) as info:
        get_estimator("ulr", copies=4, batch_norm="coupled").estimate(model, cross_entropy, x, y)
    assert "batch_norm=rowwise" in str(info.value) and "\n" not in str(info.value)
    assert all("forward" not in m.__dict__ for m in model.modules())
    get_estimator("ulr", copies=4, batch_norm="rowwise").estimate(model, cross_entropy, x, y)


def test_unknown_batch_norm_mode_is_one_line_and_default_is_rowwise() -> None:
    with pytest.raises(EstimatorError, match="coupled, rowwise"):
        get_estimator("alr", batch_norm="detached")
    assert get_estimator("ulr").opts["batch_norm"] == get_estimator("alr").opts["batch_norm"] == "rowwise"


def test_qmc_and_syncbatchnorm_are_refused_in_coupled_mode_only_on_batchnorm_models() -> None:
    model, x, y = bn_mlp()
    with pytest.raises(EstimatorError, match="qmc=false or batch_norm=rowwise"):
        get_estimator("ulr", copies=4, qmc=True, batch_norm="coupled").estimate(model, cross_entropy, x, y)
    get_estimator("ulr", copies=4, qmc=True, batch_norm="rowwise").estimate(model, cross_entropy, x, y)
    model.eval()
    get_estimator("ulr", copies=4, qmc=True, batch_norm="coupled").estimate(model, cross_entropy, x, y)
    model.train()
    model[0][1] = nn.SyncBatchNorm(12, affine=False).double()          # (with affine: no LR rule)
    with pytest.raises(EstimatorError, match="SyncBatchNorm '0.1'"):
        get_estimator("ulr", copies=4, batch_norm="coupled").estimate(model, cross_entropy, x, y)


def test_coupled_running_statistics_move_once_per_step() -> None:
    model, x, y = bn_conv()
    twin, _, _ = bn_conv()
    with torch.no_grad():
        twin(x)
    get_estimator("ulr", copies=8, injection="layerwise", prefix_sharing=True, baseline="clean",
                  batch_norm="coupled").estimate(model, cross_entropy, x, y)
    for a, b in zip(model.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- slow: 300 estimates
COUPLED = {**ISSUE_OPTS, "batch_norm": "coupled"}
COUPLED_CASES = {
    "ulr-layerwise-clean": ("ulr", COUPLED),
    "ulr-prefix-loo": ("ulr", {**COUPLED, "baseline": "loo", "prefix_sharing": True}),
    "ulr-global-clean": ("ulr", {**COUPLED, "injection": "global"}),
    "alr-prefix-clean": ("alr", {**COUPLED, "prefix_sharing": True, "sigma": 1e-3}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(COUPLED_CASES))
@pytest.mark.parametrize("build", [bn_mlp, bn_conv], ids=["mlp-bn1d", "conv-bn2d"])
def test_coupled_mean_is_within_monte_carlo_error_of_bp(build, case: str) -> None:
    name, opts = COUPLED_CASES[case]
    model, x, y = build()
    z2 = z_squared(model, x, y, bp_gradient(model, cross_entropy, x, y), 300, name, **opts)
    assert_within_monte_carlo_error(z2, model)


@pytest.mark.slow
@pytest.mark.parametrize("build", [bn_mlp, bn_conv], ids=["mlp-bn1d", "conv-bn2d"])
def test_rowwise_mean_is_within_error_of_the_detached_reference_not_of_bp(build) -> None:
    model, x, y = build()
    opts = {**ISSUE_OPTS, "batch_norm": "rowwise"}
    detached = detached_statistics_gradient(model, x, y)
    z2 = z_squared(model, x, y, detached, 300, **opts)
    assert_within_monte_carlo_error(z2, model)
    against_bp = z_squared(model, x, y, bp_gradient(model, cross_entropy, x, y), 300, **opts)
    assert max(against_bp.values()) > 20.0, against_bp       # target mismatch, not noise


def test_coupled_alr_concurrent_equals_sequential_and_adaptive_sigma_moves() -> None:
    model, x, y = bn_conv()
    opts = {"copies": 4, "sigma": 0.05, "seed": 1, "baseline": "clean", "batch_norm": "coupled",
            "injection": "layerwise", "prefix_sharing": True}
    state = copy.deepcopy(model.state_dict())
    get_estimator("alr", **opts).estimate(model, cross_entropy, x, y)
    sequential = flat_grad(model).clone()
    model.load_state_dict(state)
    get_estimator("alr", concurrent=True, workers=2, **opts).estimate(model, cross_entropy, x, y)
    assert torch.equal(flat_grad(model), sequential)
    model.load_state_dict(state)
    est = get_estimator("ulr", adaptive_sigma=True, sigma_lr=0.1, **opts)
    sigmas = [est.estimate(model, cross_entropy, x, y)[1]["sigma_block0"] for _ in range(3)]
    assert sigmas[0] == pytest.approx(0.05) and sigmas[1] != sigmas[0] and all(0.05 * 0.8 < s < 0.05 * 1.2 for s in sigmas)
