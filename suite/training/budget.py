"""What a budgeted run will spend: the schedule's length under a budget, and the cost of one step probed
on a copy of a run's model (the price of a ``budget.same_as`` reference, suite/cli/budgets.py)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

from lrbench.schema import UNITS_KNOWN_BEFORE_TRAINING as KNOWN_BEFORE_TRAINING
from lrbench.suite.errors import UserError


def planned_steps(config: Mapping[str, Any], steps_per_epoch: int,
                  per_step_cost: Callable[[], Mapping[str, float | None]]) -> int:
    """Optimizer steps the run will take (the lr schedule's length T).

    min(max_steps, max_epochs × steps_per_epoch, ⌈amount / per-step cost⌉) over the limits that are set;
    the budget term only for a unit known before training (``per_step_cost`` is called only then).
    """
    limits = [s for s in (config.get("max_steps"),
                          config["max_epochs"] * steps_per_epoch if config.get("max_epochs") else None) if s]
    budget = config.get("budget")
    if budget and budget["unit"] in KNOWN_BEFORE_TRAINING and (config.get("lr_schedule", "none") != "none" or not limits):
        per_step = per_step_cost().get(budget["unit"])
        if per_step:
            limits.append(math.ceil(budget["amount"] * (1 - 1e-9) / per_step))
    return max(1, min(limits)) if limits else 1


def reference_cost(config: Mapping[str, Any], unit: str) -> float:
    """What the run ``config`` spends in ``unit`` under its own epoch/step limits: per-step cost × steps."""
    if config.get("max_epochs") is None and config.get("max_steps") is None:
        raise UserError(f"budget.same_as: the reference run {config['task']}/{config['estimator']} has neither "
                        "max_epochs nor max_steps, so its cost is not defined")
    per_step, steps_per_epoch = probe_step_cost(config)
    steps = min(s for s in (config.get("max_steps"),
                            config["max_epochs"] * steps_per_epoch if config.get("max_epochs") else None) if s)
    value = per_step[unit]
    if value is None:
        raise UserError(f"budget.same_as: the {unit} of one step of {config['estimator']} could not be measured")
    return float(value) * steps


def probe_step_cost(config: Mapping[str, Any]) -> tuple[dict[str, float | None], int]:
    """Forward passes (the estimator's own count) and FLOPs of one training step of ``config``, on a copy of
    its model and first training batch (CPU; the global RNG is forked), and the batches per epoch."""
    import torch

    from lrbench.tasks import get_task

    from .runner import _estimator, measure_step_cost

    with torch.random.fork_rng():
        torch.manual_seed(int(config["seed"]))
        spec = get_task(config["task"])
        model = spec.build_model(**config["model_options"])
        data = spec.load_data(data_dir=config.get("data_dir"), device="cpu")
        if config.get("train_subset") is not None:
            data = data.subset(train=config["train_subset"])
        x, y = next(iter(data.batches("train", config["batch_size"], seed=config["seed"], epoch=0)))
        estimator = _estimator(dict(config))
        _, flops = measure_step_cost(model, estimator, dict(config), spec.loss_fn, x, y, torch.device("cpu"))
        passes = forward_passes_of_one_step(model, estimator, spec.loss_fn, x, y)
    return {"forward_passes": passes, "flops": flops}, data.num_batches("train", config["batch_size"])


def forward_passes_of_one_step(model: Any, estimator: Any, loss_fn: Any, x: Any, y: Any) -> float:
    """``logs["forward_passes"]`` of one ``estimate`` call on copies of the model and the estimator."""
    import torch

    from lrbench.estimators import get_estimator

    with torch.random.fork_rng():
        twin = get_estimator(estimator.name, **estimator.opts)
        twin.load_state_dict(estimator.state_dict())
        _, logs = twin.estimate(copy.deepcopy(model), loss_fn, x, y)
    return float(logs["forward_passes"])
