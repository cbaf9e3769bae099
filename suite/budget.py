"""Compute budgets: the config key ``budget`` that bounds a run, besides epochs and steps, by its cost.

Forms (``unit`` one of ``forward_passes``, ``flops``, ``cpu_seconds``, ``wall_seconds``; how each is
counted: :mod:`suite.metrics.cost` and docs/RESULTS.md)::

    budget: {unit: forward_passes, amount: 50000}          # stop once 50 000 forward passes are spent
    budget: {unit: forward_passes, same_as: ulr}           # the cost of this suite's ulr run on the task
    budget: {unit: flops, same_as: {estimator: ulr, estimator_options.baseline: clean}}

``amount``: training stops after the step that spends it (``metrics.cost.BudgetStop``); ``max_epochs`` /
``max_steps`` still apply when set (whichever comes first). ``same_as`` (units known before training:
forward passes and FLOPs) is the *equal-compute* form: :func:`resolve_reference_budgets` replaces it by
``amount`` = the reference run's per-step cost × its steps (``max_epochs`` × batches per epoch, or
``max_steps``), measured by one probe step on a copy of the reference's model, keeps what it was resolved
from under ``reference`` and clears ``max_epochs`` / ``max_steps`` of the run: the budget alone bounds
it, so every estimator of the task spends the same compute (the reference itself runs its own steps).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import UserError

BUDGET_UNITS = ("forward_passes", "flops", "cpu_seconds", "wall_seconds")
KNOWN_BEFORE_TRAINING = ("forward_passes", "flops")  # units a same_as reference can be priced in
BUDGET_KEYS = ("unit", "amount", "same_as", "reference")


def check_budget(value: Any, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The validated ``budget`` of a config (None = no budget); one-line UserError naming the fix."""
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise UserError(f"'budget' must be a mapping such as {{unit: forward_passes, amount: 1e5}} or null, got {value!r}")
    budget = dict(value)
    unknown = sorted(set(map(str, budget)) - set(BUDGET_KEYS))
    if unknown:
        raise UserError(f"unknown budget key '{unknown[0]}'; valid keys: unit, amount, same_as")
    unit = budget.get("unit")
    if unit not in BUDGET_UNITS:
        raise UserError(f"budget.unit must be one of {', '.join(BUDGET_UNITS)}; got {unit!r}")
    has_amount, has_same = budget.get("amount") is not None, budget.get("same_as") is not None
    if has_amount == has_same:
        raise UserError("budget needs exactly one of 'amount' (a number) and 'same_as' (a reference run), "
                        f"got {'both' if has_amount else 'neither'}")
    if has_amount:
        amount = budget["amount"]
        if isinstance(amount, str):
            try:
                amount = float(amount)
            except ValueError:
                pass
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount > 0 or math.isinf(amount):
            raise UserError(f"budget.amount must be a positive number, got {budget['amount']!r}")
        budget["amount"] = float(amount)
    else:
        if unit not in KNOWN_BEFORE_TRAINING:
            raise UserError(f"budget.same_as needs a unit known before training ({', '.join(KNOWN_BEFORE_TRAINING)}); "
                            f"a {unit} budget needs an 'amount'")
        _reference_match(budget["same_as"])  # shape check
        budget.pop("reference", None)
    if (config.get("max_epochs") is None and config.get("max_steps") is None and unit not in KNOWN_BEFORE_TRAINING
            and config.get("lr_schedule", "none") != "none"):
        raise UserError(f"lr_schedule '{config['lr_schedule']}' needs max_epochs or max_steps with a {unit} budget "
                        "(the schedule's length cannot be known before training)")
    return budget


def _reference_match(same_as: Any) -> dict[str, Any]:
    """``ulr`` -> ``{"estimator": "ulr"}``; a mapping of (dotted) config keys is used as it is."""
    if isinstance(same_as, str) and same_as:
        return {"estimator": same_as}
    if isinstance(same_as, Mapping) and same_as:
        return dict(same_as)
    raise UserError(f"budget.same_as must be an estimator name or a mapping of config keys to match, got {same_as!r}")


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


def resolve_reference_budgets(configs: Sequence[dict[str, Any]],
                              pool: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Replace every ``budget.same_as`` of ``configs`` by the cost of its reference run, looked up in
    ``pool`` (default: ``configs``; the whole suite when ``--only`` kept a part). Others unchanged.

    A reference's cost is measured once per config-without-seed: per-step forward passes and FLOPs
    depend on shapes only, and the steps on the data size, never on the seed."""
    from .config import get_dotted

    pool = configs if pool is None else pool

    prices: dict[str, float] = {}
    out = []
    for config in configs:
        budget = config.get("budget")
        if not budget or budget.get("same_as") is None:
            out.append(config)
            continue
        match = _reference_match(budget["same_as"])
        candidates = [c for c in pool if c["task"] == config["task"]
                      and all(_matches(get_dotted(c, str(k)), v) for k, v in match.items())]
        if not candidates:
            raise UserError(f"budget.same_as {budget['same_as']!r}: this suite has no such run on task "
                            f"'{config['task']}' to take the budget from")
        reference = next((c for c in candidates if c["seed"] == config["seed"]), candidates[0])
        key = f"{budget['unit']}|{_identity(reference)}"
        if key not in prices:
            prices[key] = reference_cost(reference, budget["unit"])
        resolved = copy.deepcopy(config)
        resolved["budget"] = {"unit": budget["unit"], "amount": prices[key], "reference": budget["same_as"]}
        resolved["max_epochs"] = resolved["max_steps"] = None
        out.append(resolved)
    return out


def _matches(actual: Any, wanted: Any) -> bool:
    return actual in (wanted if isinstance(wanted, list) else [wanted]) or str(actual) == str(wanted)


def _identity(config: Mapping[str, Any]) -> str:
    from .results import config_hash

    return config_hash(dict(config))


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
