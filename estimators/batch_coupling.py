"""Train-mode BatchNorm under the likelihood-ratio estimators: the rows of a batch are coupled.

A BatchNorm that normalises with batch statistics (training mode, or no running statistics) makes
every row's output depend on every other row of the batch, so the loss of the batch,
L(θ) = (1/B) Σ_i ℓ_i, is not a sum of per-row functions. Two gradients are then on offer:

* **coupled** (what BP computes): ∇_θ L with the batch mean and variance differentiated.
* **statistics-detached**: ∇_θ L with the batch mean and variance treated as constants (the running-
  statistics style reference; ``detached_batch_statistics`` builds it with autograd).

``batch_norm="coupled"`` estimates the first. The noisy copies of the batch form K independent
replicas: copy group k = rows {i·K + k : i < B} of the sample-major layout, and every batch-statistics
BatchNorm normalises each group with its own statistics (``grouped_batch_norm``), exactly as BP's
forward normalises the batch. Replica k is then a function of its own noise only, and the
likelihood-ratio (push-out) identity for the whole replica gives, for a module m with output noise
v_ik + σ·ε_ik,

    ∇_θm E[L_k] = E[ Σ_i J_θm(v_ik)ᵀ (L_k − b_k) · score(ε_ik) / σ ],   L_k = (1/B) Σ_j ℓ_jk,

so the score of row (i, k) is weighted by its copy group's loss instead of its own: with the engine's
weights (ℓ − b)/N (N = B·K) a coupled row gets Σ_j (ℓ_jk − b_jk) / N. Any baseline whose group sum does
not depend on group k's noise keeps this unbiased: clean (the noise-free losses of the batch) and loo
(the other copy groups, independent replicas). A module whose every call happens after the pass's last
batch-statistics BatchNorm cannot reach another row's loss, so its rows keep their own loss (same
mean, less variance); the split is by call order (``CouplingTracker``), which is conservative: a module
called before a BatchNorm it does not feed is weighted by the group loss, still unbiased.

``batch_norm="rowwise"`` keeps each row's own loss and lets BatchNorm normalise with the statistics of
every row in flight (all copies of the batch): the cross-row path through the statistics is dropped,
and the estimate's mean is the statistics-detached gradient (up to the O(1/(B·K)) share of a row in
the statistics it sees, and O(σ²)).

Variance: a coupled row's weight carries the noise of all B rows of its group, so the variance of the
coupled parameters grows roughly like B; docs/ESTIMATORS.md has the measured cost.
This module depends on torch only.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import EstimatorError
from .rules import Rule, affine_norm_rule

BATCH_NORM_MODES = ("coupled", "rowwise")


def uses_batch_statistics(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm that normalises with the statistics of the batch it is given."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or module.running_mean is None)


def batch_statistics_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every (name, module) of ``model`` that normalises with batch statistics, in ``named_modules`` order."""
    return [(name, m) for name, m in model.named_modules() if uses_batch_statistics(m)]


@contextlib.contextmanager
def replaced_forwards(modules: Sequence[nn.Module],
                      forward_of: Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Inside, ``module(x)`` runs ``forward_of(module)(x)`` (hooks still fire); the modules' own forward
    (an instance-level one included) is back on exit. By hand: torch has no public way to swap a
    module's computation, and a forward hook could only recompute the output (twice the cost)."""
    saved = [(m, m.__dict__.get("forward")) for m in modules]
    for m in modules:
        m.forward = forward_of(m)
    try:
        yield
    finally:
        for m, own in saved:
            if own is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = own


# ============================================================================ per-copy-group statistics
def grouped_normalise(x: torch.Tensor, copies: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                      eps: float) -> torch.Tensor:
    """BatchNorm of the sample-major rows (i·K + k) with the statistics of each copy group k:

        y[i·K+k, c, …] = γ_c (x[i·K+k, c, …] − μ_kc) / √(var_kc + eps) + β_c,

    μ_kc and var_kc (biased) over the B rows of group k and every position. Computed as one BatchNorm
    of x viewed (B, K·C, …): a group's channel c is channel k·C + c of the view.
    """
    samples, channels = x.shape[0] // copies, x.shape[1]
    view = x.reshape(samples, copies * channels, *x.shape[2:])
    w = None if weight is None else weight.repeat(copies)
    b = None if bias is None else bias.repeat(copies)
    return F.batch_norm(view, None, None, w, b, True, 0.0, eps).view(x.shape)


def grouped_batch_norm_rule(copies: int) -> Rule:
    """The BatchNorm affine rule (``rules.affine_norm_rule``) with x̂ normalised per copy group."""

    def normaliser(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return grouped_normalise(x, copies, None, None, module.eps)

    return functools.partial(affine_norm_rule, normaliser=normaliser)


# ============================================================================ the noisy passes
class CouplingTracker:
    """During a coupled noisy pass: batch-statistics BatchNorms normalise per copy group, and the
    tracker notes how many module calls (records) had happened before the pass's last such BatchNorm.

    Used as a context manager around a whole estimate (``replaced_forwards``); outside ``begin``/``end``
    the modules compute their own forward.
    """

    def __init__(self, norms: Sequence[tuple[str, nn.Module]], qmc: bool = False) -> None:
        if qmc:
            raise EstimatorError("qmc with batch_norm=coupled: the rows of a copy group are points of one Sobol "
                                 "sequence, not independent, so the replica identity fails; use qmc=false or "
                                 "batch_norm=rowwise")
        sync = next((name for name, m in norms if isinstance(m, nn.SyncBatchNorm)), None)
        if sync is not None:
            raise EstimatorError(f"SyncBatchNorm '{sync}' with batch_norm=coupled: copy groups are normalised on "
                                 "this rank only; use nn.BatchNorm*d or batch_norm=rowwise")
        self.norms = list(norms)
        self._exit: contextlib.ExitStack | None = None
        self.rows = self.copies = 0
        self.records: list[Any] | None = None
        self.coupled_calls = 0            # records made before the last batch-statistics BatchNorm call
        self.grouped: set[int] = set()    # id of every BatchNorm normalised per group in this pass

    def __enter__(self) -> CouplingTracker:
        names = {id(m): name for name, m in self.norms}
        self._exit = contextlib.ExitStack()
        self._exit.enter_context(replaced_forwards(
            [m for _, m in self.norms], lambda m: functools.partial(self._forward, names[id(m)], m)))
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._exit is not None
        self._exit.close()
        self._exit = None

    def begin(self, samples: int, copies: int, records: list[Any]) -> None:
        self.rows, self.copies, self.records = samples * copies, copies, records
        self.coupled_calls = 0
        self.grouped = set()

    def end(self) -> None:
        self.records = None

    def _forward(self, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.records is None:
            return type(module).forward(module, x)      # the clean pass: the module's own computation
        if x.dim() < 2 or x.shape[0] != self.rows:
            raise EstimatorError(f"BatchNorm '{name}' normalises {x.shape[0] if x.dim() else 0} rows but the pass "
                                 f"has {self.rows} (samples × copies); batch_norm=coupled needs batch-first "
                                 "BatchNorm inputs, use batch_norm=rowwise")
        self.coupled_calls = len(self.records)
        self.grouped.add(id(module))
        return grouped_normalise(x, self.copies, module.weight, module.bias, module.eps)

    def couple(self, records: Sequence[Any], centered: torch.Tensor, rows_total: int) -> bool:
        """After a pass: the records made before its last batch-statistics BatchNorm get their copy
        group's weights Σ_j c_jk / N (``group_weights``), a grouped BatchNorm's records the per-group
        affine rule. Whether any record was coupled (the pass's losses are then group losses)."""
        rule = grouped_batch_norm_rule(self.copies) if self.grouped else None
        for rec in records:
            if id(rec.slot.module) in self.grouped:
                rec.rule = rule
        if not self.coupled_calls:
            return False
        weights = group_weights(centered, self.rows // self.copies, self.copies) / rows_total
        for rec in records[: self.coupled_calls]:
            rec.weights = weights
        return True


def group_weights(centered: torch.Tensor, samples: int, copies: int) -> torch.Tensor:
    """Each row's copy-group total: w[i·K + k] = Σ_j c[j·K + k] (the coupled rows' weight numerator)."""
    return centered.view(samples, copies).sum(0).repeat(samples)


def check_whole_batch_passes(layouts: Sequence[tuple[int, int, int]], batch: int, chunk: int,
                             min_copies: int) -> None:
    """Batch-statistics BatchNorm needs every pass to carry all B samples (its statistics are the
    batch's); a chunk that splits the samples would normalise sub-batches."""
    if any(s1 - s0 != batch for s0, s1, _ in layouts):
        raise EstimatorError(f"chunk={chunk} splits the batch of {batch} samples across passes, so train-mode "
                             f"BatchNorm would normalise sub-batches; use chunk >= {batch * min_copies} or chunk=0")


# ============================================================================ the detached reference
@contextlib.contextmanager
def detached_batch_statistics(model: nn.Module) -> Iterator[None]:
    """Inside, every batch-statistics BatchNorm of ``model`` normalises with its batch mean and biased
    variance *detached*: y = γ (x − sg[μ]) / √(sg[var] + eps) + β, so autograd (BP) gives the
    statistics-detached gradient. Running statistics are not touched."""

    def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, x.dim())]
        mean = x.detach().mean(dims)
        var = x.detach().var(dims, unbiased=False)
        return F.batch_norm(x, mean, var, module.weight, module.bias, False, 0.0, module.eps)

    with replaced_forwards([m for _, m in batch_statistics_norms(model)], lambda m: functools.partial(forward, m)):
        yield
