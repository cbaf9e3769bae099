"""The benchmark's own small networks: block-structured ``nn.Sequential`` MLPs and CNNs of a given depth.

``depth`` is the number of blocks that own parameters (the unit of layer-wise injection and of the
per-block ``copies`` list). Inputs are random tensors: the bench measures time and memory, not accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BenchNet:
    """A model, one input batch and its targets, and the loss with per-row reduction."""

    name: str
    model: nn.Sequential
    inputs: torch.Tensor
    targets: torch.Tensor

    @property
    def depth(self) -> int:
        return len(parametric_blocks(self.model))


def per_row_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ℓ_n = −log softmax(outputs_n)[targets_n], shape (N,)."""
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def parametric_blocks(model: nn.Sequential) -> list[int]:
    """Indices of the children of ``model`` that own a trainable parameter (in order)."""
    return [i for i, block in enumerate(model) if any(p.requires_grad for p in block.parameters())]


def mlp(depth: int, width: int, in_features: int, classes: int = 10) -> nn.Sequential:
    """``depth`` blocks: (depth − 1) × [Linear(→width), ReLU], then Linear(width→classes)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    blocks: list[nn.Module] = []
    fan_in = in_features
    for _ in range(depth - 1):
        blocks.append(nn.Sequential(nn.Linear(fan_in, width), nn.ReLU()))
        fan_in = width
    blocks.append(nn.Linear(fan_in, classes))
    return nn.Sequential(*blocks)


def cnn(depth: int, channels: int, in_channels: int = 3, classes: int = 10) -> nn.Sequential:
    """``depth`` blocks: (depth − 1) × [Conv3×3(→channels, pad 1), ReLU] at constant resolution, then
    [global average pool, Flatten, Linear(channels→classes)]."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    blocks: list[nn.Module] = []
    fan_in = in_channels
    for _ in range(depth - 1):
        blocks.append(nn.Sequential(nn.Conv2d(fan_in, channels, 3, padding=1), nn.ReLU()))
        fan_in = channels
    blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(fan_in, classes)))
    return nn.Sequential(*blocks)


def make_net(family: str, depth: int, *, width: int, batch: int, image: int, classes: int = 10,
             seed: int = 0, device: torch.device | str = "cpu") -> BenchNet:
    """An ``mlp`` (inputs (batch, 3·image²)) or ``cnn`` (inputs (batch, 3, image, image)) with a random batch."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "mlp":
            model = mlp(depth, width, 3 * image * image, classes)
            inputs = torch.rand(batch, 3 * image * image, generator=gen)
        elif family == "cnn":
            model = cnn(depth, width, 3, classes)
            inputs = torch.rand(batch, 3, image, image, generator=gen)
        else:
            raise ValueError(f"unknown bench family '{family}'; valid: mlp, cnn")
    targets = torch.randint(0, classes, (batch,), generator=gen)
    return BenchNet(f"{family}{depth}", model.to(device), inputs.to(device), targets.to(device))
