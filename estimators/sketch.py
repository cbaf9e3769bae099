"""Randomized sketches of a layer input: store ZᵀX and a seed, rebuild an unbiased X̃ = s·Z(ZᵀX) later.

The maths of XConv (ESTIMATORS.md). A weight gradient is linear in the layer input X (conv:
∂L/∂W = conv2d_weight(X, δY); Linear: ∂L/∂W = δYᵀX), so replacing X by any X̃ with E[X̃] = X gives an
unbiased weight gradient. With probes Z (n×k) such that E[s·ZZᵀ] = I:

    X̄ = ZᵀX  (stored: k numbers per sketched vector)        X̃ = s·Z X̄ = s·ZZᵀX,   E[X̃] = X

equivalently ∂f/∂w_i = tr(X δYᵀ T_{−k(i)}) ≈ s·tr((ZᵀX) δYᵀ T_{−k(i)} Z), the randomized trace estimator.
Z is never stored: it is regenerated from the sketch's seed in backward.

Probe laws (``dist``): rademacher (±1) or gaussian entries, s = 1/k; or Haar-orthonormal columns (QR of
a Gaussian matrix, signs fixed), for which E[QQᵀ] = (k/n)·I, s = n/k, and the sketch is exact at k = n.

Layouts of a conv input X (B, c, H, W), N = H·W pixels:
- ``gaussian``:    one (c·N)×r probe set for all channels jointly; stores r·B numbers.
- ``independent``: one N×r probe set over pixels, shared by the channels; stores c·r·B numbers.
- ``orthogonal``:  channel j gets its own r_j ≈ r/c disjoint orthonormal columns over its N pixels
                   (Σ r_j = r, r_j ≤ N); stores r·B numbers; exact when r = c·N.
A Linear input X (M rows, d features) is sketched along the batch/row axis: Z is M×r, X̄ = ZᵀX (r×d),
with entries from ``dist`` or, for ``orthogonal``, Haar columns.

This module depends on torch only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from .base import EstimatorError
from .seeding import generator

PROBE_MODES = ("gaussian", "independent", "orthogonal")
PROBE_DISTS = ("rademacher", "gaussian")
SEED_BYTES = 8  # the probe seed is one 64-bit integer


def random_probes(n: int, k: int, dist: str, seed: int, device: torch.device, dtype: torch.dtype,
                  batch: int = 1) -> torch.Tensor:
    """Z of shape (batch, n, k) with i.i.d. entries, E[z] = 0, E[z²] = 1 (so E[ZZᵀ] = k·I)."""
    return draw_probes((batch, n, k), dist, generator(seed, device), device, dtype)


def draw_probes(shape: tuple[int, ...], dist: str, gen: torch.Generator, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """i.i.d. entries with E[z] = 0, E[z²] = 1 from ``gen``: ±1 (rademacher) or N(0, 1) (gaussian)."""
    if dist == "rademacher":
        return torch.empty(shape, device=device, dtype=dtype).bernoulli_(0.5, generator=gen).mul_(2).sub_(1)
    if dist == "gaussian":
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)
    raise EstimatorError(f"probe_dist must be one of {', '.join(PROBE_DISTS)}; got {dist!r}")


def orthonormal_probes(n: int, k: int, seed: int, device: torch.device, dtype: torch.dtype,
                       batch: int = 1) -> torch.Tensor:
    """Q of shape (batch, n, k), k ≤ n, Haar-distributed orthonormal columns: QᵀQ = I, E[QQᵀ] = (k/n)·I.

    Q = G R⁻¹ (the Q of a QR factorisation of a Gaussian G) with the signs of diag(R) moved into Q,
    which makes Q exactly Haar; any subset of its columns is Haar on fewer columns.
    """
    if k > n:
        raise AssertionError("at most n orthonormal columns in dimension n")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    gauss = torch.randn((batch, n, k), generator=generator(seed, device), device=device, dtype=work)
    q, r = torch.linalg.qr(gauss)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs[signs == 0] = 1
    return (q * signs.unsqueeze(-2)).to(dtype)


class Sketch:
    """One sketched tensor: ``compress(x)`` returns what is stored, ``expand(stored)`` returns X̃, E[X̃] = x.

    Holds only Python numbers (the seed and shapes); the probes are regenerated in both calls.
    """

    def __init__(self, probes: int, dist: str, seed: int) -> None:
        self.probes = probes
        self.dist = dist
        self.seed = seed
        self.shape: torch.Size | None = None

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def expand(self, stored: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stored_numbers(self, shape: tuple[int, ...]) -> int:
        """How many numbers ``compress`` stores for an input of ``shape`` (the memory formula)."""
        raise NotImplementedError


class JointSketch(Sketch):
    """``gaussian`` conv layout: x (B, c, H, W) → X̄ = x.view(B, c·N) @ Z, Z (c·N)×r; X̃ = X̄ Zᵀ / r.

    Z can be larger than X (c·N·r vs c·N·B numbers): it is drawn and used in row blocks of at most
    ``CHUNK`` numbers, in the same order in ``compress`` and ``expand``, so it never exists whole.
    """

    CHUNK = 1 << 20

    def _z_blocks(self, ref: torch.Tensor, n: int) -> Iterator[tuple[slice, torch.Tensor]]:
        gen = generator(self.seed, ref.device)
        rows = max(1, self.CHUNK // self.probes)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            yield slice(start, stop), draw_probes((stop - start, self.probes), self.dist, gen, ref.device, ref.dtype)

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        self.shape = x.shape
        flat = x.reshape(x.shape[0], -1)
        out = flat.new_zeros(flat.shape[0], self.probes)
        for rows, z in self._z_blocks(x, flat.shape[1]):
            out.addmm_(flat[:, rows], z)
        return out

    def expand(self, stored: torch.Tensor) -> torch.Tensor:
        assert self.shape is not None
        x_tilde = stored.new_empty(self.shape[0], math.prod(self.shape[1:]))
        for rows, z in self._z_blocks(stored, x_tilde.shape[1]):
            x_tilde[:, rows] = stored @ z.T
        return x_tilde.div_(self.probes).reshape(self.shape)

    def stored_numbers(self, shape: tuple[int, ...]) -> int:
        return shape[0] * self.probes


class PixelSketch(Sketch):
    """``independent`` conv layout: X̄[b, j] = x[b, j].view(N) @ Z, Z N×r shared by channels; X̃ = X̄ Zᵀ / r."""

    def _z(self, ref: torch.Tensor, n: int) -> torch.Tensor:
        return random_probes(n, self.probes, self.dist, self.seed, ref.device, ref.dtype)[0]

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        self.shape = x.shape
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        return flat @ self._z(x, flat.shape[2])

    def expand(self, stored: torch.Tensor) -> torch.Tensor:
        assert self.shape is not None
        z = self._z(stored, math.prod(self.shape[2:]))
        return (stored @ z.T).div_(self.probes).reshape(self.shape)

    def stored_numbers(self, shape: tuple[int, ...]) -> int:
        return shape[0] * shape[1] * self.probes


def channel_columns(channels: int, pixels: int, probes: int) -> list[int]:
    """r_j for the ``orthogonal`` layout: r split as evenly as possible over channels, each r_j ≤ N."""
    if probes >= channels * pixels:
        return [pixels] * channels
    base, extra = divmod(probes, channels)
    return [base + (1 if j < extra else 0) for j in range(channels)]


class ChannelOrthogonalSketch(Sketch):
    """``orthogonal`` conv layout: X̄_j = Q_jᵀ x_j with Q_j (N×r_j) Haar, disjoint per channel j;
    X̃_j = (N/r_j)·Q_j X̄_j. Needs r ≥ c (every channel at least one column); exact when r_j = N for all j.
    """

    def _q(self, ref: torch.Tensor, channels: int, pixels: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        cols = channel_columns(channels, pixels, self.probes)
        if min(cols) < 1:
            raise EstimatorError(
                f"probe_mode=orthogonal needs probes >= input channels; got probes={self.probes} for a layer "
                f"with {channels} input channels (raise probes or use probe_mode=gaussian/independent)")
        width = max(cols)
        q = orthonormal_probes(pixels, width, self.seed, ref.device, ref.dtype, batch=channels)
        used = torch.arange(width, device=ref.device)[None, :] < torch.tensor(cols, device=ref.device)[:, None]
        return q, used, cols

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        self.shape = x.shape
        batch, channels = x.shape[0], x.shape[1]
        flat = x.reshape(batch, channels, -1)
        q, used, _ = self._q(x, channels, flat.shape[2])
        full = torch.einsum("bjn,jnk->bjk", flat, q)
        return full[:, used]  # (B, Σ_j r_j): only the used columns are kept

    def expand(self, stored: torch.Tensor) -> torch.Tensor:
        assert self.shape is not None
        batch, channels, pixels = self.shape[0], self.shape[1], math.prod(self.shape[2:])
        q, used, cols = self._q(stored, channels, pixels)
        full = stored.new_zeros(batch, channels, q.shape[2])
        full[:, used] = stored
        scale = pixels / torch.tensor(cols, device=stored.device, dtype=stored.dtype)
        return torch.einsum("bjk,jnk->bjn", full * scale[None, :, None], q).reshape(self.shape)

    def stored_numbers(self, shape: tuple[int, ...]) -> int:
        return shape[0] * sum(channel_columns(shape[1], math.prod(shape[2:]), self.probes))


class RowSketch(Sketch):
    """Linear layout: x (M, d) → X̄ = Zᵀx (k×d) with Z M×k along the rows; X̃ = s·Z X̄.

    ``orthonormal``: Z Haar with k = min(r, M), s = M/k (exact when r ≥ M); otherwise entries from
    ``dist``, k = r, s = 1/r.
    """

    def __init__(self, probes: int, dist: str, seed: int, orthonormal: bool) -> None:
        super().__init__(probes, dist, seed)
        self.orthonormal = orthonormal

    def _z(self, ref: torch.Tensor, rows: int) -> tuple[torch.Tensor, float]:
        if self.orthonormal:
            k = min(self.probes, rows)
            return orthonormal_probes(rows, k, self.seed, ref.device, ref.dtype)[0], rows / k
        return random_probes(rows, self.probes, self.dist, self.seed, ref.device, ref.dtype)[0], 1.0 / self.probes

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        self.shape = x.shape
        z, _ = self._z(x, x.shape[0])
        return z.T @ x

    def expand(self, stored: torch.Tensor) -> torch.Tensor:
        assert self.shape is not None
        z, scale = self._z(stored, self.shape[0])
        return (z @ stored).mul_(scale)

    def stored_numbers(self, shape: tuple[int, ...]) -> int:
        k = min(self.probes, shape[0]) if self.orthonormal else self.probes
        return k * shape[1]


def conv_sketch(mode: str, probes: int, dist: str, seed: int) -> Sketch:
    """The sketch of a conv input for ``probe_mode`` = gaussian | independent | orthogonal."""
    layouts = {"gaussian": JointSketch, "independent": PixelSketch, "orthogonal": ChannelOrthogonalSketch}
    if mode not in layouts:
        raise EstimatorError(f"probe_mode must be one of {', '.join(PROBE_MODES)}; got {mode!r}")
    return layouts[mode](probes, dist, seed)
