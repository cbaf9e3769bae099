"""Dropout masks for the LR estimators: one mask per sample, keyed on the estimator's seed, shared by the
sample's clean pass and all its noisy copies.

An LR estimate differences the losses of a sample's noisy copies against a baseline (the clean loss, or
the other copies). If every pass drew its own dropout masks, those differences would measure the masks
as much as the noise, and the clean baseline would be the loss of a different network. So while
``SharedDropoutMasks`` is active every ``nn.Dropout`` in training mode (its own ``forward``, p > 0)
computes, at call c of a pass,

    y = x ⊙ m_i / (1 − p),   m_i ~ Bernoulli(1 − p) per element, drawn for the whole batch from
    counter_seed(seed, step, −2, module, c) and taken at row i for every copy of sample i.

Given the masks, the estimate is the LR estimate of the network with those masks fixed, so its mean over
masks and noise is ∇_θ E_m E_ε[L] — the same target as BP's mean over masks. A call whose rows are not
the pass's samples × copies (e.g. time-major sequences) and every other stochastic layer (Dropout2d,
functional dropout inside a module) keep torch's global RNG, which ``Estimator.estimate`` forks and
seeds from the estimator's seed: still deterministic, but not shared between copies.

This module depends on torch only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .seeding import counter_seed, generator


def _shareable(module: nn.Module) -> bool:
    return (isinstance(module, nn.Dropout) and type(module).forward is nn.Dropout.forward
            and "forward" not in module.__dict__)


class SharedDropoutMasks:
    """Context manager installing the keyed, per-sample dropout forwards on ``model``'s ``nn.Dropout``
    modules (restored on exit). Outside ``noisy(s0, s1, copies)`` the rows in flight are the clean pass's
    ``batch`` samples; inside, samples s0..s1 with ``copies`` rows each (sample-major)."""

    def __init__(self, model: nn.Module, batch: int, seed: int, step: int) -> None:
        self.modules = [m for m in model.modules() if _shareable(m)]
        self.batch, self.seed, self.step = batch, seed, step
        self.window = (0, batch, 1)
        self.calls: dict[int, int] = {}
        self._saved: tuple[tuple[int, int, int], dict[int, int]] | None = None

    def __enter__(self) -> SharedDropoutMasks:
        for index, module in enumerate(self.modules):
            module.forward = self._forward(module, index)
        return self

    def __exit__(self, *exc: Any) -> None:
        for module in self.modules:
            del module.forward

    def noisy(self, s0: int, s1: int, copies: int) -> None:
        """Enter a noisy pass over samples [s0, s1) with ``copies`` rows each (its own call counters)."""
        self._saved = (self.window, self.calls)
        self.window, self.calls = (s0, s1, copies), {}

    def restart(self) -> None:
        """A second clean pass of the same step (prefix recomputation): it draws the first one's masks."""
        self.calls = {}

    def clean(self) -> None:
        """Back to the clean pass (its call counters continue where they were)."""
        if self._saved is not None:
            (self.window, self.calls), self._saved = self._saved, None

    def _forward(self, module: nn.Dropout, index: int) -> Any:
        exact = nn.Dropout.forward.__get__(module)

        def forward(x: torch.Tensor) -> torch.Tensor:
            s0, s1, copies = self.window
            if not module.training or module.p == 0 or x.dim() == 0 or x.shape[0] != (s1 - s0) * copies:
                return exact(x)
            call = self.calls.get(index, 0)
            self.calls[index] = call + 1
            if module.p >= 1:
                return x.mul_(0) if module.inplace else torch.zeros_like(x)
            gen = generator(counter_seed(self.seed, self.step, -2, index, call), x.device)
            keep = torch.empty((self.batch, *x.shape[1:]), dtype=x.dtype, device=x.device)
            keep.bernoulli_(1.0 - module.p, generator=gen).div_(1.0 - module.p)
            mask = keep[s0:s1].repeat_interleave(copies, dim=0) if copies > 1 else keep[s0:s1]
            return x.mul_(mask) if module.inplace else x * mask

        return forward
