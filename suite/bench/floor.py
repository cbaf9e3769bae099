"""The physical floor of a likelihood-ratio step: exactly the forward passes it must run, and nothing else.

An LR step (ULR or ALR) must run, at the least:

* one clean pass of the whole network at batch B (the noise-free loss it returns, the clean baseline,
  and — with prefix sharing — the clean activation at the input of every block);
* its noisy passes. ``global`` injection: the whole network on B·K rows. ``layerwise`` injection, block b
  with K_b copies: with prefix sharing, blocks b, b+1, … on the clean input of block b replicated K_b
  times (B·K_b rows); without (naive replay), the whole network on B·K_b rows;
* the per-row loss of every pass.

Physical floor (``share_head=True``): the first module of the noisy block (of the whole net, for global
injection) is row-wise (Linear, ConvNd) and its input is the same for every copy of a sample, so its
clean output is computed once at batch B and replicated; noise is added after it. Only the modules
after it must run on B·K rows. ``share_head=False`` gives the block-level floor (the noisy block runs
whole on B·K rows), and naive replay shares nothing.

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


ROW_WISE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def split_noisy_head(block: nn.Module) -> tuple[nn.Module, list[nn.Module]] | None:
    """``(head, rest)`` when the block's first module is a row-wise parametric module (Linear, ConvNd) —
    its clean output is the same for every copy of a sample, so it can run once at batch B and be
    replicated, noise being added afterwards; ``None`` otherwise."""
    if isinstance(block, ROW_WISE_TYPES):
        return block, []
    if isinstance(block, nn.Sequential) and len(block) and isinstance(block[0], ROW_WISE_TYPES):
        return block[0], list(block)[1:]
    return None


def _replicated_suffix(model: nn.Sequential, first: int, source: torch.Tensor, k: int,
                       share_head: bool) -> tuple[torch.Tensor, list[nn.Module]]:
    """The tensor a noisy pass from block ``first`` starts from, and the modules it still has to run.
    ``share_head``: the block's head module runs at batch B before replication (``split_noisy_head``)."""
    split = split_noisy_head(model[first]) if share_head else None
    if split is None:
        return source.repeat_interleave(k, dim=0), list(model[first:])
    head, rest = split
    return head(source).repeat_interleave(k, dim=0), rest + list(model[first + 1:])


def _chunks(rows: int, chunk: int | None) -> list[slice]:
    step = rows if not chunk else max(1, int(chunk))
    return [slice(lo, min(lo + step, rows)) for lo in range(0, rows, step)]


def run_plan(model: nn.Sequential, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
             plan: ForwardPlan, chunk: int | None = None, share_head: bool = False) -> float:
    """Run the clean pass and every pass of ``plan`` (no grad, no noise); returns the summed losses
    (a Python float, so nothing is lazily skipped). ``share_head``: see ``_replicated_suffix``."""
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
            x, modules = _replicated_suffix(model, first, block_inputs[first], k, share_head)
            y = targets.repeat_interleave(k, dim=0)
            for rows in _chunks(x.shape[0], chunk):
                h = x[rows]
                for module in modules:
                    h = module(h)
                total += loss_fn(h, y[rows]).sum()
    return float(total)


def forward_only(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """One clean forward and per-row loss at batch B under ``no_grad``: the unit of ``bp_step_over_forward``."""
    with torch.no_grad():
        return float(loss_fn(model(inputs), targets).sum())
