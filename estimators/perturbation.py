"""Weight-space directions regenerated from seeds, for estimators that evaluate the model several times.

ES, SPSA (MeZO) and forward gradients all draw a direction z ~ N(0, I) over every trainable parameter,
evaluate the model at (or along) θ + s·z, and finally write ĝ = Σ_d c_d·z_d into ``.grad``. Nothing here
stores z: ``directions(params, seed)`` regenerates it bit-identically from its counter-based seed.

This module depends on torch only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .base import EstimatorError, LossFn
from .seeding import fixed_global_randomness, generator

RESTORE_MODES = ("copy", "subtract")


def directions(params: Sequence[torch.Tensor], seed: int) -> Iterator[torch.Tensor]:
    """z = (z_p)_p with z_p ~ N(0, I) of p's shape, dtype and device, drawn in parameter order.

    One generator per device, seeded with ``seed``: the same (params, seed) always gives the same z.
    """
    gens: dict[torch.device, torch.Generator] = {}
    for p in params:
        gen = gens.get(p.device)
        if gen is None:
            gen = gens[p.device] = generator(seed, p.device)
        yield torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)


def write_direction_sum(params: Sequence[torch.Tensor], seeds: Sequence[int], coefs: Sequence[float]) -> None:
    """p.grad ← Σ_d c_d·z_d[p] for every parameter (replaces .grad), z_d regenerated from ``seeds[d]``."""
    if len(seeds) != len(coefs):
        raise AssertionError("one coefficient per direction")
    with torch.no_grad():
        for p in params:
            p.grad = torch.zeros_like(p)
        for seed, coef in zip(seeds, coefs, strict=True):
            for p, z in zip(params, directions(params, seed), strict=True):
                p.grad.add_(z, alpha=float(coef))


class InPlacePerturbation:
    """θ ← θ + s·z(seed) in place, with z regenerated from its seed, and a guaranteed restore.

    ``restore='copy'`` keeps one backup of the trainable parameters and restores them bit-exactly
    (memory: one extra copy of the parameters). ``restore='subtract'`` is MeZO's scheme: undo by adding
    −s·z again (memory = inference, but θ drifts by a few ulps per step). Use as a context manager: the
    parameters are restored on exit, even when the block raises.
    """

    def __init__(self, params: Sequence[torch.Tensor], restore: str = "copy") -> None:
        if restore not in RESTORE_MODES:
            raise EstimatorError(f"restore must be one of {', '.join(RESTORE_MODES)}; got {restore!r}")
        self.params = list(params)
        self.restore_mode = restore
        self.backup = [p.detach().clone() for p in self.params] if restore == "copy" else None
        self.current: tuple[int, float] | None = None  # (seed, scale) of the offset now applied

    @property
    def backup_bytes(self) -> int:
        return sum(b.nbytes for b in self.backup) if self.backup is not None else 0

    def set(self, seed: int, scale: float) -> None:
        """Make the parameters θ + scale·z(seed) (from whatever offset is applied now)."""
        with torch.no_grad():
            if self.backup is not None:
                for p, b, z in zip(self.params, self.backup, directions(self.params, seed), strict=True):
                    p.copy_(b).add_(z, alpha=scale)
            elif self.current is not None and self.current[0] == seed:
                delta = scale - self.current[1]
                for p, z in zip(self.params, directions(self.params, seed), strict=True):
                    p.add_(z, alpha=delta)
            else:
                self.restore()
                for p, z in zip(self.params, directions(self.params, seed), strict=True):
                    p.add_(z, alpha=scale)
        self.current = (seed, scale)

    def restore(self) -> None:
        """Return to the unperturbed θ (exactly with 'copy', up to rounding with 'subtract')."""
        if self.current is None:
            return
        with torch.no_grad():
            if self.backup is not None:
                for p, b in zip(self.params, self.backup, strict=True):
                    p.copy_(b)
            else:
                seed, scale = self.current
                for p, z in zip(self.params, directions(self.params, seed), strict=True):
                    p.sub_(z, alpha=scale)
        self.current = None

    def __enter__(self) -> InPlacePerturbation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


@contextlib.contextmanager
def frozen_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer (BatchNorm running statistics, counters) on exit.

    The clean pass of a multi-pass estimator updates running statistics once, as one BP step would; the
    extra perturbed or tangent passes run inside this block so that they do not update them again.
    """
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def mean_loss(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
              rng_seed: int) -> torch.Tensor:
    """L(θ) = (1/B) Σ_i ℓ_i without autograd; stochastic layers draw their masks from ``rng_seed``."""
    with torch.no_grad(), fixed_global_randomness(rng_seed, inputs.device):
        return loss_fn(model(inputs), targets).mean().detach()
