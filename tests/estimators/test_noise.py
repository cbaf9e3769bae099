"""Noise for the LR estimators: laws and scores, keys, antithetic layout, QMC beyond the Sobol limit."""

from __future__ import annotations

import math

import torch

from lrbench.estimators.noise import NOISE_LAWS, SOBOL_MAX_DIM, draw_noise, sobol_uniforms
from lrbench.estimators.seeding import counter_seed

GAUSS, LAPLACE = NOISE_LAWS["gaussian"], NOISE_LAWS["laplace"]


def test_keys_are_deterministic_and_distinct() -> None:
    keys = {counter_seed(0, step, module, call, group) for step in range(3) for module in range(4)
            for call in range(3) for group in range(3)}
    assert len(keys) == 3 * 4 * 3 * 3
    assert counter_seed(1, 2, 3) == counter_seed(1, 2, 3) and 0 <= counter_seed(1, 2, 3) < 2 ** 63


def test_laws_have_unit_variance_and_their_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    for law in (GAUSS, LAPLACE):
        eps = law.sample((400_000,), gen, torch.float64, torch.device("cpu"))
        assert abs(float(eps.var()) - 1) < 0.01
        assert abs(float(eps.abs().mean()) - law.mean_abs) < 0.005
        assert abs(float(law.log_sigma_score(eps).mean())) < 0.01          # E[ε·score − 1] = 0
        assert abs(float((law.score(eps) * eps).mean()) - 1) < 0.01        # Stein: E[score·ε] = 1
    eps = torch.tensor([-2.0, 0.5])
    assert torch.equal(LAPLACE.score(eps), torch.tensor([-math.sqrt(2), math.sqrt(2)]))


def test_antithetic_rows_are_adjacent_pairs_of_the_same_sample() -> None:
    eps = draw_noise(GAUSS, 3, 4, (5,), key=1, antithetic=True, qmc=False, dtype=torch.float64,
                     device=torch.device("cpu"))
    rows = eps.view(3, 2, 2, 5)
    assert torch.equal(rows[:, :, 0], -rows[:, :, 1])
    assert not torch.equal(rows[0, 0, 0], rows[1, 0, 0])


def test_qmc_handles_more_dimensions_than_the_sobol_engine() -> None:
    dim = SOBOL_MAX_DIM + 37
    u = sobol_uniforms(2, 8, dim, key=5)
    assert u.shape == (2, 8, dim) and float(u.min()) > 0 and float(u.max()) < 1
    # 8 points of a scrambled Sobol net: every coordinate hits each of the 8 strata [j/8, (j+1)/8) once
    strata = (u[0] * 8).floor().sort(dim=0).values
    assert torch.equal(strata, torch.arange(8.0, dtype=torch.float64).view(8, 1).expand(8, dim))
    # the two coordinate blocks come from independent scrambles, and samples are independently ordered
    assert not torch.equal(u[0, :, 0], u[0, :, SOBOL_MAX_DIM])
    assert not torch.equal(u[0, :, :5], u[1, :, :5])


def test_qmc_gaussian_copies_are_balanced() -> None:
    """Each sample's 64 copies are a scrambled net mapped by Φ⁻¹: their mean is far closer to 0 than
    64 pseudo-random draws' (|mean| ~ 1/8)."""
    eps = draw_noise(GAUSS, 4, 64, (50,), key=2, antithetic=False, qmc=True, dtype=torch.float64,
                     device=torch.device("cpu")).view(4, 64, 50)
    means = eps.mean(1).abs()
    assert float(means.mean()) < 0.01 and float(means.max()) < 0.06          # pseudo-random: ≈ 0.1 and 0.35
    assert abs(float(eps.var()) - 1) < 0.05


def test_qmc_scramble_is_redrawn_per_key_not_only_shifted_and_reordered() -> None:
    """Issue 13 (3): the randomisation is a fresh linear scramble + digital shift per key (seed, step, module,
    call, group). A digital shift and a reordering leave the multiset of pairwise XORs of a sample's points
    unchanged; an independent scramble does not (on the old fixed-scramble code they were equal)."""
    def pairwise_xors(key: int) -> list[int]:
        ints = (sobol_uniforms(1, 16, 4, key)[0] * 2 ** 30).floor().to(torch.int64)
        return sorted((ints[:, None, :] ^ ints[None, :, :]).reshape(-1).tolist())

    assert pairwise_xors(1) != pairwise_xors(2)
    assert pairwise_xors(1) == pairwise_xors(1)
    u = sobol_uniforms(2, 16, 5, 3)                         # each sample's 16 points: still a net
    for i in range(2):
        assert torch.equal((u[i] * 16).floor().sort(0).values, torch.arange(16.0).unsqueeze(1).expand(16, 5))
