"""Counter-based seeds: every random draw of an estimator is keyed on integers, never on RNG state.

``counter_seed(seed, step, module, call, copy)`` hashes a tuple of integers to a 63-bit seed with the
SplitMix64 finaliser, so that the noise of any (step, module, call, copy) can be regenerated on demand
(MeZO's trick: perturbations are recomputed, not stored) and two estimators with the same ``seed`` and the
same call sequence draw bit-identical numbers.

This module depends on torch only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """SplitMix64: z += φ·2⁶⁴; z = (z ⊕ z≫30)·c₁; z = (z ⊕ z≫27)·c₂; return z ⊕ z≫31 (all mod 2⁶⁴)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def counter_seed(*keys: int) -> int:
    """h₀ = 0, h_{j+1} = splitmix64(h_j ⊕ splitmix64(k_j)); returns h mod 2⁶³ (a valid torch seed).

    Distinct key tuples give (with overwhelming probability) unrelated seeds; the same tuple always gives
    the same seed. Negative keys are taken mod 2⁶⁴.
    """
    h = 0
    for k in keys:
        h = _splitmix64(h ^ _splitmix64(int(k) & _MASK64))
    return h & ((1 << 63) - 1)


def generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


@contextlib.contextmanager
def fixed_global_randomness(seed: int, device: torch.device | str) -> Iterator[None]:
    """Run a block with the global RNG (CPU, and ``device`` if CUDA) seeded with ``seed``, restored after.

    Zeroth-order estimators compare losses of several passes; stochastic layers (dropout) must draw the
    same mask in each of them, or the loss differences measure the mask, not the perturbation.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(seed)
        yield
