"""MLP family: Normalize+Flatten, then one block per hidden layer (Linear [+norm] + activation), then a
Linear classifier block."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from .layers import Normalize, feature_norm, make_activation


def build_mlp(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
              widths: Sequence[int] = (64,), activation: str = "relu", norm: str = "none") -> nn.Sequential:
    """Blocks: [Normalize, Flatten] · [Linear(d_i→w_i), norm, act] per width · [Linear(→classes)]."""
    blocks: list[nn.Module] = [nn.Sequential(Normalize(mean, std), nn.Flatten())]
    fan_in = math.prod(input_shape)
    for width in widths:
        blocks.append(nn.Sequential(nn.Linear(fan_in, int(width)), *feature_norm(norm, int(width)),
                                    make_activation(activation)))
        fan_in = int(width)
    blocks.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*blocks)
