"""The Estimator interface: one template ``estimate``, options coerced once (idempotently), re-validated
copies, and the registry's contracts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench.estimators import ESTIMATORS, Estimator, EstimatorError, get_estimator, registry
from lrbench.estimators.registry import _load_builtin_estimators
from tests.helpers.lr_estimates import cross_entropy, mlp, mlp_batch

_load_builtin_estimators()
NAMES = ("bp", "ulr", "alr", "xconv", "es", "spsa", "fg", "ulr-block", "bp-noise")
SAMPLE_OPTIONS = {"ulr": {"copies": "8", "sigma": "0.05", "baseline": "CLEAN", "antithetic": "true"},
                  "alr": {"copies": [2, 4, 2], "injection": "layerwise", "concurrent": 1, "workers": "2"},
                  "xconv": {"probes": 4.0, "probe_mode": "independent", "layers": "all"},
                  "es": {"copies": "4", "antithetic": "yes"}, "spsa": {"directions": "3"}, "fg": {"directions": 2},
                  "bp": {"seed": "5"}, "ulr-block": {"copies": "4", "bp_blocks": 1.0, "baseline": "LOO"},
                  "bp-noise": {"sigma": "0.1", "noise": "laplace"}}


def test_every_estimator_uses_the_template_estimate() -> None:
    """Only ``_estimate`` is estimator-specific: the reset / check / step bookkeeping lives in the base."""
    assert sorted(ESTIMATORS) == sorted(NAMES)
    for name, cls in ESTIMATORS.items():
        assert cls.estimate is Estimator.estimate, name
        assert cls._estimate is not Estimator._estimate, name


@pytest.mark.parametrize("name", NAMES)
def test_estimate_bookkeeping_and_idempotent_options(name: str) -> None:
    cls = ESTIMATORS[name]
    once = cls.resolve_options(SAMPLE_OPTIONS[name])
    assert cls.resolve_options(once) == once                    # coercion is idempotent
    est = get_estimator(name, **SAMPLE_OPTIONS[name])
    assert est.opts == once
    twin = est.with_options()                                    # re-validation of resolved options
    assert twin.opts == est.opts and type(twin) is cls
    model = mlp()
    x, y = mlp_batch()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)                         # stale gradients are replaced
    est.estimate(model, cross_entropy, x, y)
    assert est.step == 1
    assert all(not torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())


def test_unused_trainable_parameter_is_an_error() -> None:
    """bp, ulr, alr, xconv (the weight-space estimators give every parameter a direction, used or not)."""
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = mlp()
            self.spare = nn.Linear(2, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    x, y = mlp_batch()
    for name in ("bp", "ulr", "alr", "xconv"):
        est = get_estimator(name)
        with pytest.raises(EstimatorError, match="spare"):
            est.estimate(Unused(), cross_entropy, x, y)
        assert est.step == 0


def test_with_options_revalidates_cross_option_checks() -> None:
    est = get_estimator("ulr", copies=4, antithetic=True)
    with pytest.raises(EstimatorError, match="even"):
        est.with_options(copies=3)


def test_registry_has_no_dead_helpers() -> None:
    assert not hasattr(registry, "module_path")
    assert "find_spec" not in open(registry.__file__).read()
