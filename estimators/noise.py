"""Noise for the LR estimators: laws and their scores, counter-based keys, pseudo-random and
quasi-Monte-Carlo draws with antithetic pairing, and 1-bit sign packing.

Layout: a noisy pass carries ``samples × copies`` rows, sample-major (row = i·K + k). A draw for one
module call has shape ``(rows, *unit_shape)``; with ``antithetic`` copies come in adjacent pairs
(ε, −ε) of the same sample. Every draw is keyed on integers (seed, step, module, call, copy group) so
that it can be regenerated bit-identically instead of stored (``noise_storage='seed'``).

This module depends on torch only.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass

import torch

from .seeding import counter_seed


# ----------------------------------------------------------------------------- laws
@dataclass(frozen=True)
class NoiseLaw:
    """A unit-variance noise law with density f. ``score(ε) = −(ln f)'(ε)`` replaces ε in the LR
    estimate; ``mean_abs = E|ε|`` rescales the sign score of ALR; ``log_sigma_score(ε) = ε·score(ε) − 1``
    is ∂ ln p_σ(v + σε)/∂ ln σ per unit (the adaptive-σ statistic)."""

    name: str

    def sample(self, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
        if self.name == "gaussian":
            return torch.randn(shape, generator=generator, dtype=dtype, device=device)
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        return self.from_uniform(u)

    def from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        """Inverse CDF. Gaussian: Φ⁻¹(u). Laplace (scale b = 1/√2): −b·sign(u−½)·ln(1 − 2|u−½|)."""
        tiny = torch.finfo(u.dtype).tiny if u.dtype != torch.float64 else 1e-300
        u = u.clamp(tiny, 1.0 - torch.finfo(u.dtype).eps / 2)
        if self.name == "gaussian":
            return torch.special.ndtri(u)
        c = u - 0.5
        return -torch.sign(c) * torch.log1p(-2.0 * c.abs()) / math.sqrt(2.0)

    def score(self, eps: torch.Tensor) -> torch.Tensor:
        """Gaussian: ε. Laplace (unit variance): √2·sign(ε)."""
        if self.name == "gaussian":
            return eps
        return torch.sign(eps) * math.sqrt(2.0)

    @property
    def mean_abs(self) -> float:
        """E|ε|: √(2/π) for the Gaussian, 1/√2 for the unit-variance Laplace."""
        return math.sqrt(2.0 / math.pi) if self.name == "gaussian" else 1.0 / math.sqrt(2.0)

    def log_sigma_score(self, eps: torch.Tensor) -> torch.Tensor:
        """ε·score(ε) − 1: Gaussian ε² − 1, Laplace √2|ε| − 1 (mean 0 under the law)."""
        if self.name == "gaussian":
            return eps * eps - 1.0
        return eps.abs() * math.sqrt(2.0) - 1.0


NOISE_LAWS = {name: NoiseLaw(name) for name in ("gaussian", "laplace")}

# ----------------------------------------------------------------------------- draws
SOBOL_MAX_DIM = torch.quasirandom.SobolEngine.MAXDIM  # 21201


_SOBOL_BITS = torch.quasirandom.SobolEngine.MAXBIT          # points are integers / 2³⁰
_DIRECTION_NUMBERS: dict[int, torch.Tensor] = {}
_DIRECTION_LOCK = threading.Lock()


def _direction_numbers(width: int) -> torch.Tensor:
    """The (unscrambled) Sobol direction numbers of the first ``width`` dimensions, as 30-bit integers of
    shape (width, 30): column j is v_j, the digits of the point with only bit j of its index set. Cached
    per width: they carry no randomness (the randomisation is applied per draw, ``_scrambled_sobol``)."""
    with _DIRECTION_LOCK:
        if width not in _DIRECTION_NUMBERS:
            _DIRECTION_NUMBERS[width] = torch.quasirandom.SobolEngine(width, scramble=False).sobolstate.clone()
        return _DIRECTION_NUMBERS[width]


def _scrambled_sobol(count: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """The first ``count`` points of a freshly randomised Sobol sequence in ``width`` dims, as 30-bit
    integers (count, width): a random linear matrix scramble plus a random digital shift (Matoušek 1998;
    what ``SobolEngine(scramble=True)`` does), drawn from ``gen``.

    Digits are MSB first (digit 1 = bit 29). Per dimension d a random lower-triangular binary matrix L_d
    with unit diagonal maps the digits x ↦ L_d x, applied to the direction numbers (the map is linear
    over GF(2)): v'_j = ⊕_c x_c(v_j)·col_c(L_d), col_c = bit c | random lower bits. Point n is
    x_n = (⊕_{j: bit j of gray(n)} v'_j) ⊕ s_d, gray(n) = n ⊕ (n ≫ 1) (the order of Sobol's
    Antonov–Saleev recursion, which keeps runs of consecutive points balanced; built by doubling). Each point is uniform; the first 2^m points form a net. Written
    here rather than through ``SobolEngine(scramble=True, seed=...)``, which costs O(width·30²) scalar
    work per engine (0.8 s at 12544 dims) where this is a few vectorised passes (a new scramble per draw).
    """
    bits = max(1, (count - 1).bit_length())
    v = _direction_numbers(width)[:, :bits]
    top = torch.ones(1, dtype=torch.int64).bitwise_left_shift(
        torch.arange(_SOBOL_BITS - 1, -1, -1, dtype=torch.int64))          # bit of digit c = 2^(29−c)
    columns = torch.randint(0, 2 ** _SOBOL_BITS, (width, _SOBOL_BITS), generator=gen, dtype=torch.int64)
    columns = columns.bitwise_and_(top - 1).bitwise_or_(top)
    scrambled = torch.zeros_like(v)
    for c in range(_SOBOL_BITS):
        digit = v.bitwise_right_shift(_SOBOL_BITS - 1 - c).bitwise_and_(1)
        scrambled.bitwise_xor_(digit.mul_(columns[:, c:c + 1]))
    shift = torch.randint(0, 2 ** _SOBOL_BITS, (1, width), generator=gen, dtype=torch.int64)
    points = shift
    for j in range(bits):              # Gray-code order: points [2^j, 2^(j+1)) are points [0, 2^j) reversed, ⊕ v'_j
        points = torch.cat([points, points.flip(0).bitwise_xor_(scrambled[:, j])])
    return points[:count]


def sobol_uniforms(samples: int, points: int, dim: int, key: int) -> torch.Tensor:
    """Randomised Sobol points in (0,1)^dim for each of ``samples`` samples: shape (samples, points, dim),
    float64, CPU.

    * Coordinates come in blocks of ≤ ``SOBOL_MAX_DIM`` = 21201 (the engine's limit), each block from its
      own randomised sequence (Latin supercube sampling, Owen 1998).
    * Sample i takes the ``points`` consecutive points [i·P, (i+1)·P) of the sequence (a digital net when
      P is a power of two).
    * Randomisation per call: a random linear matrix scramble and digital shift (``_scrambled_sobol``)
      drawn from a generator seeded by ``counter_seed(key, block)``; ``key`` holds the estimator's seed,
      step, module, call and copy group, so every draw has its own independent scramble.
    * A random order of the P points per (sample, block). A linear scramble keeps a coordinate's first
      digit up to the shift (L is unit lower-triangular), so two draws that pair the same point indices
      — two module calls, whose coordinates both start at dimension 0 — would have perfectly correlated
      signs; the random order pairs the points at random (measured: without it ULR's QMC error at K =
      4000 is 100× larger).
    """
    blocks = []
    for j, start in enumerate(range(0, dim, SOBOL_MAX_DIM)):
        width = min(SOBOL_MAX_DIM, dim - start)
        gen = torch.Generator().manual_seed(counter_seed(key, j))
        ints = _scrambled_sobol(samples * points, width, gen)
        u = ints.to(torch.float64).add_(0.5).mul_(2.0 ** -_SOBOL_BITS).view(samples, points, width)
        order = torch.rand(samples, points, generator=gen, dtype=torch.float64).argsort(dim=1)
        blocks.append(u.gather(1, order.unsqueeze(2).expand(samples, points, width)))
    return torch.cat(blocks, dim=2) if len(blocks) > 1 else blocks[0]


def draw_noise(law: NoiseLaw, samples: int, copies: int, unit_shape: tuple[int, ...], key: int, *,
               antithetic: bool, qmc: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """ε of shape ``(samples·copies, *unit_shape)``, row = i·copies + k, in one vectorised draw.

    antithetic: copies 2j and 2j+1 of a sample get ε and −ε (``copies`` must be even).
    qmc: sample i's independent copies are consecutive points of one randomised Sobol sequence (a
    scrambled net when their number is a power of two; linear matrix scramble + digital shift keyed on
    ``key``, see ``sobol_uniforms``), mapped by the law's inverse CDF.
    """
    independent = copies // 2 if antithetic else copies
    shape = (samples, independent, *unit_shape)
    if qmc:
        units = math.prod(unit_shape)
        u = sobol_uniforms(samples, independent, units, key)
        eps = law.from_uniform(u).to(device=device, dtype=dtype).reshape(shape)
    else:
        gen = torch.Generator(device=device)
        gen.manual_seed(key)
        eps = law.sample(shape, gen, dtype, device)
    if antithetic:
        eps = torch.stack([eps, -eps], dim=2)
    return eps.reshape(samples * copies, *unit_shape)


# ----------------------------------------------------------------------------- sign packing
_BIT_WEIGHTS: dict[torch.device, torch.Tensor] = {}


def _bit_weights(device: torch.device) -> torch.Tensor:
    if device not in _BIT_WEIGHTS:
        _BIT_WEIGHTS[device] = (2 ** torch.arange(8, device=device)).to(torch.uint8)
    return _BIT_WEIGHTS[device]


# Bit j of byte m holds element 8m + j. On a little-endian machine 8 consecutive 0/1 bytes read as one
# int64 have element j's bit at position 8j; multiplying by _GATHER moves bit 8j to bit 56 + j (no carries:
# the partial products land on distinct bits), so (x · _GATHER) >> 56 is the packed byte. Unpacking:
# b · 0x0101…01 copies byte b into all 8 bytes; & _SPREAD keeps bit j in byte j; + 0x7F…7F carries a set
# byte into its top bit (never across bytes); >> 7 & 0x01…01 leaves byte j = bit j of b.
_GATHER = 0x0102040810204080
_SPREAD = 0x8040201008040201 - (1 << 64)      # as a signed int64
_LOW7 = 0x7F7F7F7F7F7F7F7F
_ONES = 0x0101010101010101
_LITTLE_ENDIAN = sys.byteorder == "little"


def pack_signs(eps: torch.Tensor) -> torch.Tensor:
    """1 bit per element: bit j of byte m is [ε_{8m+j} > 0]; returns ⌈numel/8⌉ uint8 (zero-padded)."""
    bits = (eps.reshape(-1) > 0).view(torch.uint8)
    pad = (-bits.numel()) % 8
    if pad:
        bits = torch.cat([bits, bits.new_zeros(pad)])
    if _LITTLE_ENDIAN:
        return (bits.view(torch.int64).mul(_GATHER) >> 56).to(torch.uint8)
    return (bits.view(-1, 8) * _bit_weights(bits.device)).sum(dim=1, dtype=torch.uint8)


def unpack_signs(packed: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Inverse of ``pack_signs``: s = 2·bit − 1 ∈ {−1, +1} of ``shape`` and ``dtype``."""
    numel = math.prod(shape)
    if _LITTLE_ENDIAN:
        x = packed.to(torch.int64).mul_(_ONES).bitwise_and_(_SPREAD)
        bits = x.add_(_LOW7).bitwise_right_shift_(7).bitwise_and_(_ONES).view(torch.uint8).reshape(-1)[:numel]
    else:
        bits = packed.unsqueeze(1).bitwise_and(_bit_weights(packed.device)).ne(0).reshape(-1)[:numel]
    return bits.to(dtype).mul_(2).sub_(1).reshape(shape)


def signs_of(eps: torch.Tensor) -> torch.Tensor:
    """s = 2·[ε > 0] − 1 — the same ±1 that ``unpack_signs(pack_signs(ε))`` returns."""
    return (eps > 0).to(eps.dtype).mul_(2).sub_(1)
