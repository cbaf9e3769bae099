"""The noise seed of each rank, by where the estimator's noise lives.

**Noise seeds across ranks** (``noise_scope`` / ``rank_seed``):

* per-sample (activation) noise — ULR, ALR, XConv: rank r uses ``rank_seed(seed, r)`` (rank 0 keeps
  ``seed``). With a shared seed, sample j of every rank would get the same noise ξ_j, correlating the
  ranks' terms and inflating the variance of the average; independent streams make the R-rank step
  equal to a one-rank step on the global batch whose noise rows are the concatenation of the ranks' noise
  (exactly so when the baseline is per-sample, e.g. ``baseline=clean``).
* weight-space noise — ES, SPSA, FG: every rank keeps the shared ``seed``, so all ranks perturb along the
  same directions z_d and (1/R) Σ_r Σ_d c_{d,r} z_d = Σ_d (mean_r c_{d,r}) z_d is *the* one-rank estimate
  on the global batch (the coefficients are linear in the batch mean loss).
* none — bp.

Each estimator class declares its ``noise_scope`` (``"sample" | "weight" | "none"``; the base class's
default is per-sample: independent noise is never biased, shared noise is only right for weight-space
directions).
"""

from __future__ import annotations

from typing import Any

from lrbench.estimators.seeding import counter_seed

from .gradient_sync import world

_RANK_SALT = 0x52414E4B  # "RANK": keeps rank seeds apart from the estimator's own counter keys


def noise_scope(estimator: Any) -> str:
    """``"sample"``, ``"weight"`` or ``"none"``: where the estimator's noise lives, as its class declares
    (``Estimator.noise_scope``); ``estimator`` is an estimator, its class or its registered name."""
    if isinstance(estimator, str):
        from lrbench.estimators import estimator_class

        estimator = estimator_class(estimator)
    return str(estimator.noise_scope)


def rank_seed(seed: int, rank: int) -> int:
    """The noise seed of rank ``rank`` for a per-sample-noise estimator: ``seed`` on rank 0, else
    ``counter_seed(seed, SALT, rank)`` (an independent stream; same (seed, rank) -> same stream)."""
    if rank == 0:
        return int(seed)
    return counter_seed(int(seed), _RANK_SALT, int(rank)) % (2**62)


def seed_for_rank(estimator: Any, seed: int, rank: int, mode: str = "data") -> int:
    """The seed ``estimator`` should use on ``rank``: shared for weight-space noise in data-parallel mode,
    per rank otherwise (in copy-parallel mode every rank must draw its own copies, whatever the scope)."""
    independent = noise_scope(estimator) == "sample" or (mode == "copies" and noise_scope(estimator) != "none")
    return rank_seed(seed, rank) if independent else int(seed)


def apply_rank_seed(estimator: Any, rank: int | None = None, mode: str = "data") -> int:
    """Re-key a built estimator's noise for this rank (``estimator.opts['seed']``); returns the seed used.

    Call once per process after the process group exists (e.g. in ``LightningModule.setup``), before
    the first ``estimate``. The base seed is remembered, so calling it again is idempotent.
    """
    if rank is None:
        rank = world()[0]
    base = getattr(estimator, "_base_seed", None)
    if base is None:
        base = int(estimator.opts.get("seed", 0))
        estimator._base_seed = base
    new = seed_for_rank(estimator, base, rank, mode)
    estimator.opts["seed"] = new
    return new
