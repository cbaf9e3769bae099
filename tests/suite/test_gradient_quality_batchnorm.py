"""Gradient quality on train-mode BatchNorm models (issue 13): ``lrbench gradcheck`` and the run records
compare the estimate with both BP references — batch statistics differentiated (BP, the coupled mode's
target) and detached (the rowwise mode's target) — and only the first on models without such BatchNorm."""

from __future__ import annotations

import json

import pytest
import torch

from lrbench.estimators import get_estimator
from lrbench.estimators.batch_coupling import detached_batch_statistics
from lrbench.suite.cli.main import main
from lrbench.suite.training.gradient_check import gradient_check
from lrbench.suite.training.metrics.gradient_quality import GradientQuality
from tests.helpers.batch_norm_models import bn_conv
from tests.helpers.lr_estimates import cross_entropy, mlp, mlp_batch


def test_gradient_check_reports_both_references_on_batchnorm_models() -> None:
    model, x, y = bn_conv()
    result = gradient_check(model, cross_entropy, x, y, "bp", {}, repeats=2)
    assert result["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert result["cosine_of_mean"] == pytest.approx(1.0, abs=1e-12)
    assert 0.9 < result["cosine_detached"] < 0.999             # BP is not the statistics-detached gradient
    assert result["relative_error_detached"] > 0.1
    # BP's gradient of the bias in front of BatchNorm is 0 (to rounding); the detached one is not
    assert result["per_parameter"]["0.0.bias"]["relative_error_detached"] == pytest.approx(1.0, abs=1e-6)
    assert set(result["per_parameter"]["2.1.weight"]) == {"cosine", "relative_error", "cosine_detached",
                                                          "relative_error_detached"}
    rowwise = gradient_check(model, cross_entropy, x, y, "ulr", {"copies": 4, "batch_norm": "rowwise"})
    assert "cosine_detached" in rowwise
    plain = gradient_check(mlp(), cross_entropy, *mlp_batch(), "bp", {})
    assert not any(key.endswith("_detached") for key in plain)


def test_gradient_quality_points_compare_with_both_references() -> None:
    model, x, y = bn_conv()
    model.insert(2, torch.nn.Dropout(0.3))                   # both references see the same dropout masks
    with detached_batch_statistics(model):                   # an "estimate" that is exactly the detached gradient
        get_estimator("bp").estimate(model, cross_entropy, x, y)
    written = [p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    quality = GradientQuality(every=1)
    point = quality.measure(model, cross_entropy, x, y, step=0)
    assert point["cosine_detached"] == pytest.approx(1.0, abs=1e-12)
    assert point["relative_error_detached"] == pytest.approx(0.0, abs=1e-12)
    assert point["cosine"] < 0.999 and point["relative_error"] > 0.1
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), written, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers, strict=True))
    summary = quality.summary()
    assert summary["mean_cosine_detached"] == pytest.approx(1.0, abs=1e-12)
    assert summary["mean_cosine"] == pytest.approx(point["cosine"])
    plain = GradientQuality(every=1)
    plain_model = mlp()
    get_estimator("bp").estimate(plain_model, cross_entropy, *mlp_batch())
    assert "cosine_detached" not in plain.measure(plain_model, cross_entropy, *mlp_batch(), step=0)
    assert plain.summary()["mean_cosine_detached"] is None


def test_gradcheck_command_on_the_batchnorm_task(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gradcheck", "--task", "digits-cnn-batchnorm", "--estimator", "bp", "--batch-size", "16", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["cosine_detached"] < 0.999
    code = main(["gradcheck", "--task", "digits-cnn-batchnorm", "--estimator", "ulr", "--batch-size", "16",
                 "--batch-norm", "rowwise"])
    out = capsys.readouterr().out
    assert code == 0 and "cosine_detached" in out and "statistics detached" in out
