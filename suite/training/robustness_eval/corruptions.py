"""Natural corruptions of images in [0, 1] at 5 severities (after Hendrycks & Dietterich's ImageNet-C).

Each corruption is a function c(x, p, generator) of one parameter p; severity s ∈ {1..5} picks p = P[s-1]
from a per-dataset table (``SEVERITY_PARAMS[family]``) and severity 0 is the identity (the no-op p).
Outputs are clipped to [0,1].

    gaussian_noise  x' = clip(x + σ·z),  z ~ N(0, 1) per element
    impulse_noise   x' = 1 (salt) / 0 (pepper) with probability a per element, else x
    contrast        x' = (x − μ)·c + μ,  μ = per-image per-channel mean
    gaussian_blur   x' = G_σ ∗ x, σ in pixels (separable, replicate padding)

    family   σ noise               a impulse              c contrast            σ blur (px)
    mnist    .08 .12 .18 .26 .38   .03 .06 .09 .17 .27    .4 .3 .2 .1 .05       .5 1 1.5 2 2.5
    digits   as mnist; blur for 8×8 images               .3 .45 .6 .8 1
    cifar    .04 .06 .08 .09 .10   .01 .02 .03 .05 .07    .75 .5 .4 .3 .15      .4 .6 .7 .8 1   (CIFAR-10-C)

Randomness comes from a generator seeded by ``(seed, corruption)`` and is drawn the same way for every
severity, so the noise fields are nested: a larger severity corrupts a superset (impulse) or scales the same
field (Gaussian), and the same seed gives the same images. Inputs may be (N, C, H, W), (N, H, W), or flat
(N, D) with D a perfect square (one channel); the output has the input's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

CORRUPTIONS = ("gaussian_noise", "impulse_noise", "contrast", "gaussian_blur")
_MNIST_PARAMS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "gaussian_blur": (0.5, 1.0, 1.5, 2.0, 2.5),
}
SEVERITY_PARAMS: dict[str, dict[str, tuple[float, ...]]] = {
    "mnist": _MNIST_PARAMS,
    "digits": {**_MNIST_PARAMS, "gaussian_blur": (0.3, 0.45, 0.6, 0.8, 1.0)},
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    },
}
IDENTITY_PARAMS = {"gaussian_noise": 0.0, "impulse_noise": 0.0, "contrast": 1.0, "gaussian_blur": 0.0}


def as_images(x: torch.Tensor) -> torch.Tensor:
    """View x as (N, C, H, W): 4-D as is, (N, H, W) → one channel, flat (N, D) with D = s² → (N, 1, s, s)."""
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 2:
        side = math.isqrt(x.shape[1])
        if side * side == x.shape[1]:
            return x.reshape(len(x), 1, side, side)
    raise ValueError(f"cannot view inputs of shape {tuple(x.shape)} as images; need (N,C,H,W), (N,H,W) or "
                     "(N,D) with D a perfect square")


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """clip(x + σ·z), z ~ N(0, I)."""
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + sigma * z).clamp(0, 1)


def impulse_noise(x: torch.Tensor, amount: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt-and-pepper: each element becomes 1 or 0 (equally likely) with probability ``amount``."""
    hit = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < amount
    salt = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
    return torch.where(hit, salt.to(x.dtype), x).clamp(0, 1)


def contrast(x: torch.Tensor, factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(x − μ)·c + μ with μ the per-image, per-channel mean (c = 1: identity, c → 0: flat grey)."""
    images = as_images(x)
    mean = images.mean(dim=(2, 3), keepdim=True)
    return ((images - mean) * factor + mean).clamp(0, 1).reshape(x.shape)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps exp(−k²/2σ²), k = −r..r, r = ⌈3σ⌉."""
    radius = max(1, math.ceil(3 * sigma))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(k**2) / (2 * sigma**2))
    return taps / taps.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """G_σ ∗ x, σ in pixels, one separable pass per axis with replicate padding (σ = 0: identity)."""
    images = as_images(x)
    if sigma <= 0:
        return x.clone()
    taps = gaussian_kernel(sigma).to(device=x.device, dtype=x.dtype)
    radius = len(taps) // 2
    n, c, h, w = images.shape
    out = images.reshape(n * c, 1, h, w)
    for dim in (3, 2):  # rows, then columns; edges repeated (replicate padding of any width)
        size = out.shape[dim]
        edge_shape = [radius if d == dim else -1 for d in range(4)]
        left = out.narrow(dim, 0, 1).expand(*edge_shape)
        right = out.narrow(dim, size - 1, 1).expand(*edge_shape)
        kernel = taps.view(1, 1, 1, -1) if dim == 3 else taps.view(1, 1, -1, 1)
        out = F.conv2d(torch.cat([left, out, right], dim=dim), kernel)
    return out.reshape(n, c, h, w).clamp(0, 1).reshape(x.shape)


CORRUPTION_FNS: dict[str, Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "impulse_noise": impulse_noise,
    "contrast": contrast,
    "gaussian_blur": gaussian_blur,
}


def corrupt(x: torch.Tensor, name: str, severity: int, *, seed: int = 0, family: str = "mnist",
            params: dict[str, list[float]] | None = None) -> torch.Tensor:
    """Corruption ``name`` at ``severity`` (0 = identity, 1..5) with its randomness seeded by (seed, name).

    The severity table is ``params[name]`` if given, else ``SEVERITY_PARAMS[family][name]``."""
    if name not in CORRUPTION_FNS:
        raise ValueError(f"unknown corruption '{name}'; valid: {', '.join(CORRUPTIONS)}")
    table = (params or {}).get(name) or SEVERITY_PARAMS[family][name]
    if not 0 <= severity <= len(table):
        raise ValueError(f"severity must be in 0..{len(table)}, got {severity}")
    value = IDENTITY_PARAMS[name] if severity == 0 else float(table[severity - 1])
    generator = torch.Generator(device=x.device).manual_seed(seed * 1000 + CORRUPTIONS.index(name))
    return CORRUPTION_FNS[name](x, value, generator)
