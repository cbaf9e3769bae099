"""Tensor augmentations (whole batches at once, seeded by a ``torch.Generator``).

Each function maps ``(x, generator) -> x`` for a batch ``x`` of shape ``(N, C, H, W)`` in [0, 1].
Random numbers are drawn on the CPU generator (so results do not depend on the device) and moved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad by ``padding`` pixels and crop back to H×W at a random offset per sample
    (torchvision ``RandomCrop(size, padding)`` semantics)."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    off_y = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    off_x = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = off_y[:, None] + torch.arange(h, device=x.device)[None, :]          # (N, H)
    cols = off_x[:, None] + torch.arange(w, device=x.device)[None, :]          # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample left-right with probability ``p``."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The standard CIFAR training augmentation: random crop (padding 4) then horizontal flip."""
    return random_hflip(random_crop(x, generator, padding=4), generator)
