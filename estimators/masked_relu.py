"""ReLU that saves a bit-packed mask for backward instead of its output (exact, 1 bit per element).

PyTorch's ReLU saves its float output y for backward (δx = δy·[y > 0]). When that output is the input of
a sketched conv (conv → BN → ReLU → conv), the ReLU keeps X alive and XConv's sketch frees nothing. This
Function saves only [y > 0], packed 8 per byte:

    forward: y = max(x, 0), saves m = packbits(y > 0)        backward: δx = δy ⊙ unpackbits(m)

This module depends on torch only.
"""

from __future__ import annotations

from typing import Any

import torch

_BIT_WEIGHTS = 1 << torch.arange(8, dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """bool tensor (any shape, n elements) -> uint8 tensor of ⌈n/8⌉ bytes, bit j of byte i = mask[8i + j]."""
    flat = mask.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = _BIT_WEIGHTS.to(flat.device)
    return (flat.view(-1, 8).to(torch.uint8) * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of ``pack_bits``: uint8 (⌈n/8⌉,) -> bool tensor of ``shape``."""
    weights = _BIT_WEIGHTS.to(packed.device)
    bits = (packed.unsqueeze(1) & weights) != 0
    return bits.reshape(-1)[: shape.numel()].reshape(shape)


class MaskedReLU(torch.autograd.Function):
    """y = max(x, 0) (in place when asked); saves packbits(y > 0) only; δx = δy ⊙ [y > 0]."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, inplace: bool, record: Any) -> torch.Tensor:
        if inplace:
            y = x.clamp_min_(0)
            ctx.mark_dirty(y)
        else:
            y = x.clamp_min(0)
        packed = pack_bits(y > 0)
        ctx.save_for_backward(packed)
        ctx.shape = y.shape
        if record is not None:
            record.stored_bytes += packed.nbytes
        return y

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (packed,) = ctx.saved_tensors
        return grad_out * unpack_bits(packed, ctx.shape), None, None
