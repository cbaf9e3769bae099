"""Multi-rank modes: batch shards (data-parallel) or copies split over ranks (``ddp_copies``).

**Copy-parallel mode** (``strategy=ddp_copies``, ``parallel_mode``): instead of batch shards, every rank
takes the whole batch with K/R of the estimator's copies (``split_copies``) and its own noise stream; the
same all-reduce gives the K-copy estimate whose copies are the ranks' copies (ALR's copy-level
parallelism). ``check_parallel`` rejects, in one line before any run, what cannot work.
"""

from __future__ import annotations

from typing import Any

import torch

from .gradient_sync import world

SUPPORTED_STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")
COPY_PARALLEL = "ddp_copies"  # lrbench's name: Lightning's ddp, every rank the whole batch, copies split


def parallel_mode(strategy: str) -> str:
    """``"copies"`` for ``strategy=ddp_copies`` (copy-level parallelism), else ``"data"`` (batch shards).

    Copy-parallel: every rank estimates on the whole global batch with K/R of the estimator's copies
    (``copies`` or ``directions``) and its own noise stream; the same .grad all-reduce (equal weights)
    then gives the K-copy estimate, ĝ = (1/R) Σ_r ĝ_{K/R}(B; ξ⁽ʳ⁾) — exactly the K-copy estimate whose
    copies are the ranks' copies concatenated (per-sample baselines none/clean; with ``loo`` each copy's
    baseline uses the other copies of its own rank). ALR's copy-level ("data-level") parallelism.
    """
    return "copies" if str(strategy).lower() == COPY_PARALLEL else "data"


def lightning_strategy(strategy: str) -> str:
    """The strategy name Lightning receives (``ddp_copies`` is Lightning's ``ddp``)."""
    return "ddp" if parallel_mode(strategy) == "copies" else strategy


def copy_option(estimator: Any) -> str | None:
    """The option that counts the estimator's independent copies, as its class declares
    (``Estimator.copies_option``), or ``None``."""
    return estimator.copies_option


def split_copies(estimator: Any, world_size: int) -> Any:
    """Copy-parallel mode: the estimator this rank runs, with K/R of the copies (each entry of a per-block
    list), re-validated by ``Estimator.with_options``."""
    key = copy_option(estimator)
    if world_size <= 1 or key is None:
        return estimator
    return estimator.with_options(**{key: copies_per_rank(estimator.opts[key], world_size)})


def copies_per_rank(value: int | list[int], world_size: int) -> int | list[int]:
    """K/R copies per rank for a copies option ``value`` (each entry of a per-block list)."""
    return [int(v) // world_size for v in value] if isinstance(value, list) else int(value) // world_size


def shard_batch(*tensors: torch.Tensor, rank: int | None = None, world_size: int | None = None,
                mode: str = "data") -> tuple[torch.Tensor, ...]:
    """This rank's rows of a global batch that every rank holds (same data order on every rank).

    Rows are split into R contiguous shards whose sizes differ by at most one (``torch.tensor_split``);
    the sync weights each rank by its row count, so the step is the global per-sample mean. A batch with
    fewer rows than ranks (a last partial batch) is not split: every rank takes all rows. Without a
    process group, or in copy-parallel mode (``mode="copies"``), the tensors are returned unchanged.
    """
    if mode == "copies":
        return tensors
    if rank is None or world_size is None:
        rank, world_size = world()
    if world_size <= 1 or tensors[0].shape[0] < world_size:
        return tensors
    return tuple(torch.tensor_split(t, world_size)[rank] for t in tensors)
