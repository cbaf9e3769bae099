"""The physical floor of a likelihood-ratio step: exactly the forward passes it must run, and nothing else.

An LR step (ULR or ALR) must run, at the least:

* one clean pass of the whole network at batch B (the noise-free loss it returns, the clean baseline,
  and — with prefix sharing — the clean activation at the input of every block);
* its noisy passes. ``global`` injection: the whole network on B·K rows. ``layerwise`` injection, block b
  with K_b copies: with prefix sharing, blocks b, b+1, … on the clean input of block b replicated K_b
  times (B·K_b rows); without (naive replay), the whole network on B·K_b rows;
* the per-row loss of every pass.

``ForwardPlan`` lists those passes; ``run_plan`` runs them under ``torch.no_grad`` with no noise, no
gradient work and no bookkeeping, on tensors of the same shapes (rows replicated sample-major,
row = i·K + k, as the LR engine lays them out; chunked like the engine when ``chunk`` is set). The ratio
(LR step time) ÷ (``run_plan`` time) is then the LR estimator's overhead over the floor: noise
generation, local VJPs, gradient accumulation and Python bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .models import parametric_blocks

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
INJECTIONS = ("global", "layerwise")


@dataclass(frozen=True)
class ForwardPlan:
    """The forward passes of one LR step after the clean pass: ``(first_block, copies)`` means
    ``model[first_block:]`` runs on the clean input of ``first_block`` replicated ``copies`` times."""

    passes: tuple[tuple[int, int], ...]

    def row_blocks(self, model: nn.Sequential, batch: int) -> int:
        """Σ over passes (clean pass included) of rows × blocks run: a shape-only size of the floor."""
        n = len(model)
        return batch * n + sum(batch * k * (n - first) for first, k in self.passes)


def per_block_copies(copies: int | Sequence[int], blocks: int) -> list[int]:
    """Broadcast an int to one entry per parametric block; a list must already have one per block."""
    if isinstance(copies, int):
        return [copies] * blocks
    if len(copies) != blocks:
        raise ValueError(f"copies has {len(copies)} entries for {blocks} parametric blocks")
    return [int(k) for k in copies]


def lr_plan(model: nn.Sequential, copies: int | Sequence[int], injection: str,
            prefix_sharing: bool = True) -> ForwardPlan:
    """The noisy passes an LR step with these settings must run (module docstring)."""
    if injection not in INJECTIONS:
        raise ValueError(f"unknown injection '{injection}'; valid: {', '.join(INJECTIONS)}")
    blocks = parametric_blocks(model)
    if injection == "global":
        k = copies if isinstance(copies, int) else max(copies)
        return ForwardPlan(((0, int(k)),))
    ks = per_block_copies(copies, len(blocks))
    return ForwardPlan(tuple((b if prefix_sharing else 0, k) for b, k in zip(blocks, ks, strict=True)))


def _chunks(rows: int, chunk: int | None) -> list[slice]:
    step = rows if not chunk else max(1, int(chunk))
    return [slice(lo, min(lo + step, rows)) for lo in range(0, rows, step)]


def run_plan(model: nn.Sequential, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
             plan: ForwardPlan, chunk: int | None = None) -> float:
    """Run the clean pass and every pass of ``plan`` (no grad, no noise); returns the summed losses
    (a Python float, so nothing is lazily skipped)."""
    starts = {first for first, _ in plan.passes}
    total = torch.zeros((), device=inputs.device)
    with torch.no_grad():
        h = inputs
        block_inputs: dict[int, torch.Tensor] = {}
        for i, block in enumerate(model):
            if i in starts:
                block_inputs[i] = h
            h = block(h)
        total += loss_fn(h, targets).sum()
        for first, k in plan.passes:
            x = block_inputs[first].repeat_interleave(k, dim=0)
            y = targets.repeat_interleave(k, dim=0)
            for rows in _chunks(x.shape[0], chunk):
                h = x[rows]
                for block in model[first:]:
                    h = block(h)
                total += loss_fn(h, y[rows]).sum()
    return float(total)


def forward_only(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """One clean forward and per-row loss at batch B under ``no_grad``: the unit of ``bp_step_over_forward``."""
    with torch.no_grad():
        return float(loss_fn(model(inputs), targets).sum())
