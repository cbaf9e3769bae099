"""Parameter-free building blocks and small factories shared by the model families.

Only modules the estimators know carry parameters (Linear, Conv, LayerNorm, BatchNorm, Embedding,
AddParameter, ClassToken); everything here is parameter-free or a container of those.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import TaskError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}
NORMS = ("none", "batch", "layer")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name; unknown -> TaskError listing the valid names."""
    if name not in ACTIVATIONS:
        raise TaskError(f"unknown activation '{name}'; valid activations: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise TaskError(f"unknown norm '{norm}'; valid norms: {', '.join(NORMS)}")
    return norm


def feature_norm(norm: str, features: int) -> list[nn.Module]:
    """Norm over a feature vector (N, F): [] / [BatchNorm1d] / [LayerNorm]."""
    check_norm(norm)
    if norm == "batch":
        return [nn.BatchNorm1d(features)]
    if norm == "layer":
        return [nn.LayerNorm(features)]
    return []


def channel_norm(norm: str, channels: int, spatial: tuple[int, int]) -> list[nn.Module]:
    """Norm over a feature map (N, C, H, W): [] / [BatchNorm2d] / [LayerNorm over (C, H, W)]."""
    check_norm(norm)
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "layer":
        return [nn.LayerNorm([channels, *spatial])]
    return []


class Normalize(nn.Module):
    """x -> (x - mean) / std per channel (dim 1), with constant buffers: the model's first op, so that
    inputs (and adversarial attacks) live in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        shape = (1, len(mean), 1, 1)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean, self.std
        if x.ndim != 4:
            mean, std = mean.view(1, -1, *([1] * (x.ndim - 2))), std.view(1, -1, *([1] * (x.ndim - 2)))
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Residual(nn.Module):
    """y = act(body(x) + shortcut(x)): a residual block (shortcut defaults to identity)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, post: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.post = post if post is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.body(x) + self.shortcut(x))


class PreNormResidual(nn.Module):
    """y = x + body(x): used by transformer blocks where ``body`` starts with its own norm."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
