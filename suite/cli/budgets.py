"""Compute budgets (command-line layer): the config key ``budget`` that bounds a run, besides epochs and steps, by its cost.

Forms (``unit`` one of ``forward_passes``, ``flops``, ``cpu_seconds``, ``wall_seconds``; how each is
counted: :mod:`suite.training.metrics.cost` and docs/RESULTS.md)::

    budget: {unit: forward_passes, amount: 50000}          # stop once 50 000 forward passes are spent
    budget: {unit: forward_passes, same_as: ulr}           # the cost of this suite's ulr run on the task
    budget: {unit: flops, same_as: {estimator: ulr, estimator_options.baseline: clean}}

``amount``: training stops after the step that spends it (``suite.training.metrics.cost.BudgetStop``); ``max_epochs`` /
``max_steps`` still apply when set (whichever comes first). ``same_as`` (units known before training:
forward passes and FLOPs) is the *equal-compute* form: :func:`resolve_reference_budgets` replaces it by
``amount`` = the reference run's per-step cost × its steps (``suite.training.budget.reference_cost``) (``max_epochs`` × batches per epoch, or
``max_steps``), measured by one probe step on a copy of the reference's model, keeps what it was resolved
from under ``reference`` and clears ``max_epochs`` / ``max_steps`` of the run: the budget alone bounds
it, so every estimator of the task spends the same compute (the reference itself runs its own steps).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lrbench.schema import COST_UNITS as BUDGET_UNITS
from lrbench.schema import UNITS_KNOWN_BEFORE_TRAINING as KNOWN_BEFORE_TRAINING
from lrbench.suite.errors import UserError

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
    if unit not in KNOWN_BEFORE_TRAINING and int(config.get("devices") or 1) > 1:
        raise UserError(f"a {unit} budget needs devices=1 (each rank's clock differs, so ranks would stop at "
                        "different steps); use forward_passes or flops with several devices")
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


def resolve_reference_budgets(configs: Sequence[dict[str, Any]],
                              pool: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Replace every ``budget.same_as`` of ``configs`` by the cost of its reference run, looked up in
    ``pool`` (default: ``configs``; the whole suite when ``--only`` kept a part). Others unchanged.

    A reference's cost is measured once per config-without-seed: per-step forward passes and FLOPs
    depend on shapes only, and the steps on the data size, never on the seed."""
    from lrbench.suite.training.budget import reference_cost

    from .config_layers import get_dotted

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
    from lrbench.schema import config_hash

    return config_hash(dict(config))


