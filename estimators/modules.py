"""Building blocks with free parameters that the LR estimators know how to perturb.

Models (tasks/) use these instead of bare ``nn.Parameter`` attributes so that every trainable
parameter belongs to a module with a per-module rule.
"""

from __future__ import annotations

import torch
from torch import nn


class AddParameter(nn.Module):
    """v = x + p, with p broadcast over the leading (batch) dimension: a positional embedding.

    ``shape`` is the shape of p without the batch dimension, e.g. (tokens, dim).
    """

    def __init__(self, *shape: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.param = nn.Parameter(torch.randn(*shape) * init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.param


class ClassToken(nn.Module):
    """v = concat([c, x], dim=1): prepend a learned token c (shape (dim,)) to a (N, T, dim) sequence."""

    def __init__(self, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(dim) * init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        token = self.token.view(1, 1, -1).expand(x.shape[0], 1, -1)
        return torch.cat([token, x], dim=1)
