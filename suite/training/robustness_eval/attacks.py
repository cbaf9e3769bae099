"""White-box gradient attacks on inputs in [0, 1]: PGD in the L∞ and L2 norms, FGSM as its one-step case.

Projected gradient ascent on the summed cross-entropy ℓ(x) = Σ_i CE(f(x_i), y_i) (Madry et al. 2018):

    x⁰     = x                                     (or x + δ₀, δ₀ uniform in the ε-ball, with random start)
    L∞:  x^{t+1} = clip_[0,1]( x + clip_[-ε,ε]( x^t + α·sign(∇ℓ(x^t)) − x ) )
    L2:  x^{t+1} = clip_[0,1]( x + Π_ε( x^t + α·∇ℓ(x^t)/‖∇ℓ(x^t)‖₂ − x ) ),   Π_ε(δ) = δ·min(1, ε/‖δ‖₂)

with step size α = step_size_factor·ε/steps. FGSM (Goodfellow et al. 2015) is one L∞ step with α = ε and no
random start: x' = clip_[0,1](x + ε·sign(∇ℓ(x))). Norms are per example over all non-batch dimensions.
Clipping to [0,1] after the projection only moves each coordinate towards x, so ‖x' − x‖ ≤ ε still holds.

The attack runs the model in eval mode with gradients enabled (also when the caller is inside
``torch.no_grad``/``torch.inference_mode``, e.g. a Lightning test hook) and with cuDNN off for recurrent
models (cuDNN's RNN backward refuses eval mode), so RNNs are attacked through their unrolled cells.
``eot_samples > 1`` averages the input gradient over that many forward passes (expectation over
transformation) for models that keep randomness at test time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("linf", "l2")


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """‖t_i‖₂ over all non-batch dimensions, shaped (N, 1, ..., 1) to broadcast against t."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Π_ε(δ): the closest point of the ε-ball of ``norm`` (clip for L∞, radial rescale for L2)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / _per_example_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
    return delta * scale


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent unit step of the norm: sign(g) for L∞, g/‖g‖₂ for L2 (0 where g = 0)."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_example_norm(grad).clamp_min(1e-12)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """δ₀ uniform in the ε-ball: U[-ε, ε]^d for L∞; for L2 a Gaussian direction times ε·u^{1/d}."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (2 * u - 1) * eps
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / _per_example_norm(direction).clamp_min(1e-12)
    dim = x[0].numel()
    radius = torch.rand((len(x),) + (1,) * (x.dim() - 1), generator=generator, device=x.device,
                        dtype=x.dtype) ** (1.0 / dim)
    return direction * radius * eps


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode, gradients on (inference mode off), cuDNN off for RNNs; restores the training flags."""
    was_training = [m.training for m in model.modules()]
    has_rnn = any(isinstance(m, nn.RNNBase) for m in model.modules())
    cudnn = torch.backends.cudnn.flags(enabled=False) if has_rnn else contextlib.nullcontext()
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad(), cudnn:
            yield
    finally:
        for module, flag in zip(model.modules(), was_training, strict=False):
            module.training = flag


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eot_samples: int = 1) -> torch.Tensor:
    """∇ₓ Σ_i CE(f(x_i), y_i), averaged over ``eot_samples`` forward passes (no parameter .grad is touched)."""
    x = x.detach().requires_grad_(True)
    total = torch.zeros_like(x)
    for _ in range(eot_samples):
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        total += grad
    return total / eot_samples


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
        steps: int = 20, step_size: float | None = None, step_size_factor: float = 2.5,
        random_start: bool = True, generator: torch.Generator | None = None,
        eot_samples: int = 1) -> torch.Tensor:
    """Untargeted PGD (module docstring); returns x' with x' ∈ [0,1] and ‖x' − x‖_norm ≤ ε.

    ``step_size`` overrides α = step_size_factor·ε/steps. ε = 0 returns x unchanged (bit for bit).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}'; valid: {', '.join(NORMS)}")
    if eps < 0 or steps < 1 or eot_samples < 1:
        raise ValueError(f"need eps >= 0, steps >= 1 and eot_samples >= 1 (got {eps}, {steps}, {eot_samples})")
    alpha = step_size_factor * eps / steps if step_size is None else step_size
    with attack_mode(model):
        x = x.detach().clone()  # a normal tensor even if x was made in inference mode
        y = y.detach().clone()
        x_adv = x.clone()
        if random_start:
            x_adv = (x + _random_start(x, eps, norm, generator)).clamp(0, 1)
        for _ in range(steps):
            grad = input_gradient(model, x_adv, y, eot_samples)
            x_adv = x_adv + alpha * _ascent_direction(grad, norm)
            x_adv = (x + project(x_adv - x, eps, norm)).clamp(0, 1)
    return x_adv.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, eot_samples: int = 1) -> torch.Tensor:
    """FGSM: x' = clip_[0,1](x + ε·sign(∇ₓℓ)) — PGD-L∞ with one step of size ε and no random start."""
    return pgd(model, x, y, eps=eps, norm="linf", steps=1, step_size=eps, random_start=False,
               eot_samples=eot_samples)
