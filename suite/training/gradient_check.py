"""Gradient check: one batch, an estimator's gradient against BP's.

``cosine``, ``relative_error`` and ``norm_ratio`` (g = BP gradient, ĝ = estimate) are those of
``suite.training.metrics.gradient_quality``, the numbers the runner records during training. With R > 1 repeats
(independent noise: the estimator's step counter advances) they are averaged over repeats,
``cosine_of_mean`` compares the mean estimate ḡ with g, ``variance`` = (1/R) Σ_r ‖ĝ_r − ḡ‖² (total
variance, summed over parameters) and ``relative_variance`` = variance / ‖g‖².
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lrbench.estimators import get_estimator
from lrbench.suite.training.metrics.gradient_quality import compare


def flat_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of every trainable parameter's ``.grad`` (float64, flattened), by parameter name."""
    return {n: p.grad.detach().double().flatten().clone() for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def gradient_check(model: nn.Module, loss_fn: Any, inputs: torch.Tensor, targets: torch.Tensor,
                   estimator: str, options: dict[str, Any], repeats: int = 1) -> dict[str, Any]:
    """Compare ``repeats`` estimates of ``estimator`` with the BP gradient on one batch (module doc)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    initial_state = copy.deepcopy(model.state_dict())

    get_estimator("bp").estimate(model, loss_fn, inputs, targets)
    reference_parts = flat_grads(model)
    names = list(reference_parts)
    reference = torch.cat([reference_parts[n] for n in names])

    est = get_estimator(estimator, **options)
    estimates: list[dict[str, torch.Tensor]] = []
    for _ in range(repeats):
        model.load_state_dict(initial_state)  # every repeat sees the same parameters and buffers
        est.estimate(model, loss_fn, inputs, targets)
        estimates.append(flat_grads(model))
    model.load_state_dict(initial_state)

    vectors = torch.stack([torch.cat([e[n] for n in names]) for e in estimates])
    per_repeat = [compare(v, reference) for v in vectors]
    result: dict[str, Any] = {
        key: sum(r[key] for r in per_repeat) / repeats for key in ("cosine", "relative_error", "norm_ratio")}
    result["per_parameter"] = {
        n: {key: sum(compare(e[n], reference_parts[n])[key] for e in estimates) / repeats
            for key in ("cosine", "relative_error")}
        for n in names}
    if repeats > 1:
        mean = vectors.mean(0)
        variance = float(((vectors - mean) ** 2).sum(1).mean())
        result["cosine_of_mean"] = compare(mean, reference)["cosine"]
        result["variance"] = variance
        result["relative_variance"] = variance / float(reference.norm() ** 2)
    result["repeats"] = repeats
    result["num_parameters"] = int(reference.numel())
    return result
