"""ViT family: patch embedding, class token, positional embedding, pre-norm transformer blocks whose
attention uses q/k/v/out ``nn.Linear`` projections (softmax is parameter-free), and an MLP.

Blocks: [Normalize, patch embedding, ClassToken, AddParameter(positions)], ``depth`` × transformer
block, [LayerNorm, class-token select, Linear].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lrbench.estimators.modules import AddParameter, ClassToken

from ..errors import TaskError
from .layers import Normalize, PreNormResidual, make_activation


class Patches(nn.Module):
    """(N, C, H, W) -> (N, (H/p)(W/p), C·p·p): non-overlapping p×p patches, row-major."""

    def __init__(self, patch: int) -> None:
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, (h // p) * (w // p), c * p * p)


class ConvTokens(nn.Module):
    """(N, D, h, w) -> (N, h·w, D): the output of a patch-embedding conv as a token sequence."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention: softmax(q kᵀ/√d) v with separate q, k, v and output Linear layers."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise TaskError(f"vit: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        hd = d // self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(n, t, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(n, t, d))


class SelectToken(nn.Module):
    """(N, T, D) -> (N, D): the token at ``index`` (the class token)."""

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


def transformer_block(dim: int, heads: int, mlp_ratio: float, activation: str) -> nn.Sequential:
    """x + Attn(LN(x)), then x + MLP(LN(x)) (pre-norm)."""
    hidden = int(dim * mlp_ratio)
    return nn.Sequential(
        PreNormResidual(nn.Sequential(nn.LayerNorm(dim), SelfAttention(dim, heads))),
        PreNormResidual(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), make_activation(activation),
                                      nn.Linear(hidden, dim))),
    )


def build_vit(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
              patch: int = 4, dim: int = 64, depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0,
              embed: str = "linear", activation: str = "gelu") -> nn.Sequential:
    """A small ViT; ``embed`` is 'linear' (Linear on flattened patches) or 'conv' (p×p conv, stride p)."""
    c, h, w = (int(s) for s in input_shape)
    patch, dim, depth, heads = int(patch), int(dim), int(depth), int(heads)
    if h % patch or w % patch:
        raise TaskError(f"vit: patch {patch} does not divide the {h}x{w} image")
    tokens = (h // patch) * (w // patch)
    if embed == "linear":
        embedding: list[nn.Module] = [Patches(patch), nn.Linear(c * patch * patch, dim)]
    elif embed == "conv":
        embedding = [nn.Conv2d(c, dim, patch, stride=patch), ConvTokens()]
    else:
        raise TaskError(f"unknown patch embedding '{embed}'; valid: linear, conv")
    blocks: list[nn.Module] = [nn.Sequential(Normalize(mean, std), *embedding, ClassToken(dim),
                                             AddParameter(tokens + 1, dim))]
    blocks += [transformer_block(dim, heads, float(mlp_ratio), activation) for _ in range(depth)]
    blocks.append(nn.Sequential(nn.LayerNorm(dim), SelectToken(0), nn.Linear(dim, num_classes)))
    return nn.Sequential(*blocks)
