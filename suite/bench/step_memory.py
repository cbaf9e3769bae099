"""Peak memory of one training step, with the suite's single definition (``suite.training.metrics.memory``).

A training step is ``estimator.estimate(model, loss_fn, x, y)`` followed by ``optimizer.step()`` (plain
SGD, no state), starting from the steady state of a training loop: one step already taken, gradients
freed (``zero_grad(set_to_none=True)``). The peak counts parameters, the batch, and every tensor storage
the step creates (``live_tensor_bytes``); on CUDA the allocator's peak is recorded beside it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lrbench.suite.training.metrics.memory import PeakMemory, state_tensors

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def training_step_peak(model: nn.Module, estimator: Any, loss_fn: LossFn, inputs: torch.Tensor,
                       targets: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, Any]:
    """``PeakMemory.result()`` of one steady-state training step of a private copy of ``model``."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        estimator.estimate(model, loss_fn, inputs, targets)
        optimizer.step()

    step()
    optimizer.zero_grad(set_to_none=True)
    with PeakMemory(state_tensors(model, optimizer, (inputs, targets)), device) as mem:
        step()
    return mem.result()
