"""Natural corruptions (suite.training.robustness_eval.corruptions): identity at severity 0, [0,1], monotone, seeded."""

from __future__ import annotations

import pytest
import torch

from lrbench.suite.training.robustness_eval.corruptions import (
    CORRUPTIONS,
    SEVERITY_PARAMS,
    corrupt,
    gaussian_blur,
    gaussian_kernel,
    impulse_noise,
)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().data[:200] / 16.0, dtype=torch.float32)  # flat (N, 64) = 8×8


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_zero_is_identity(images, name):
    assert torch.equal(corrupt(images, name, 0, seed=3), images)


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("family", ["digits", "mnist", "cifar"])
def test_outputs_in_unit_box_with_input_shape(images, name, family):
    for shaped in (images, images.reshape(-1, 1, 8, 8), images.reshape(-1, 8, 8)):
        for severity in range(1, 6):
            out = corrupt(shaped, name, severity, seed=0, family=family)
            assert out.shape == shaped.shape and out.dtype == shaped.dtype
            assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("family", ["digits", "mnist", "cifar"])
def test_severity_is_monotone(images, name, family):
    """Mean |x' − x| grows strictly with severity (same seed: nested noise fields)."""
    change = [(corrupt(images, name, s, seed=0, family=family) - images).abs().mean().item() for s in range(6)]
    assert change[0] == 0
    assert all(b > a for a, b in zip(change, change[1:], strict=False)), change


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_seeded_reproducibility(images, name):
    a = corrupt(images, name, 3, seed=7)
    assert torch.equal(a, corrupt(images, name, 3, seed=7))
    if name.endswith("noise"):
        assert not torch.equal(a, corrupt(images, name, 3, seed=8))


def test_impulse_noise_hits_the_stated_fraction_and_nests():
    grey = torch.full((100, 784), 0.5)
    for amount in (0.03, 0.27):
        out = impulse_noise(grey, amount, torch.Generator().manual_seed(0))
        hit = out != 0.5
        assert abs(hit.float().mean().item() - amount) < 0.005
        assert abs((out[hit] == 1).float().mean().item() - 0.5) < 0.02     # salt and pepper equally likely
    low = corrupt(grey, "impulse_noise", 1, seed=0) != 0.5
    high = corrupt(grey, "impulse_noise", 5, seed=0) != 0.5
    assert (high | ~low).all()   # every pixel hit at severity 1 is hit at severity 5


def test_gaussian_noise_has_the_stated_sigma():
    grey = torch.full((100, 784), 0.5)
    out = corrupt(grey, "gaussian_noise", 2, seed=0, family="mnist")
    assert (out - 0.5).std().item() == pytest.approx(SEVERITY_PARAMS["mnist"]["gaussian_noise"][1], rel=0.02)


def test_contrast_keeps_the_mean_and_scales_deviations(images):
    x = images.reshape(-1, 1, 8, 8) * 0.5 + 0.25   # no clipping
    c = SEVERITY_PARAMS["mnist"]["contrast"][0]
    out = corrupt(x, "contrast", 1, family="mnist")
    mean = x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(out.mean(dim=(2, 3), keepdim=True), mean, atol=1e-6)
    assert torch.allclose(out - mean, c * (x - mean), atol=1e-6)


def test_gaussian_blur_of_a_point_is_the_kernel():
    """Hand check: blurring a centred impulse gives the outer product of the 1-D taps; constants are kept."""
    sigma = 1.0
    taps = gaussian_kernel(sigma).float()
    r = len(taps) // 2
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    out = gaussian_blur(x, sigma)
    assert torch.allclose(out[0, 0, 7 - r:8 + r, 7 - r:8 + r], torch.outer(taps, taps), atol=1e-7)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)
    flat = torch.full((2, 3, 5, 5), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.5), flat, atol=1e-6)   # kernel wider than the image


def test_bad_names_and_severities(images):
    with pytest.raises(ValueError, match="valid"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="perfect square"):
        corrupt(torch.rand(3, 10), "gaussian_blur", 1)
