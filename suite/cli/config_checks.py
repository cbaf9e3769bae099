"""Validation of one merged config: types and ranges of the generic keys, then the task, estimator and
model options (the model is built once per option set) and the robustness settings, all before any run."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from lrbench.suite.errors import UserError

from .budgets import check_budget
from .config_layers import mapping_value as _mapping

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("none", "cosine", "step")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


# --------------------------------------------------------------------------- value checks
def _int(config: dict[str, Any], key: str, minimum: int, allow_none: bool = False) -> None:
    value = config[key]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or null" if allow_none else ""
        raise UserError(f"'{key}' must be an integer >= {minimum}{extra}, got {value!r}")


def _number(config: dict[str, Any], key: str, minimum: float, strict: bool) -> None:
    value = config[key]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        value > minimum if strict else value >= minimum)
    if not ok or value != value:
        raise UserError(f"'{key}' must be a number {'>' if strict else '>='} {minimum}, got {config[key]!r}")
    config[key] = float(value)


ALIASES = {"lr_schedule": {"constant": "none"}}


def _choice(config: dict[str, Any], key: str, choices: Sequence[str]) -> None:
    value = config[key]
    if isinstance(value, str):
        value = ALIASES.get(key, {}).get(value.lower(), value)
    if not isinstance(value, str) or value.lower() not in choices:
        raise UserError(f"'{key}' must be one of {', '.join(choices)}; got {value!r}")
    config[key] = value.lower()


def _resolve_accelerator(value: str) -> str:
    import torch

    if value == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if value == "cuda":
        value = "gpu"
    if value == "gpu" and not torch.cuda.is_available():
        raise UserError("accelerator 'gpu' requested but no CUDA device is available; use accelerator=cpu")
    return value


def check_values(config: dict[str, Any]) -> None:
    """Type/range checks of every generic key (in place; normalises case and number types)."""
    for key in ("task", "estimator"):
        if not isinstance(config[key], str) or not config[key]:
            raise UserError(f"'{key}' must be a name (see 'lrbench list {key}s'), got {config[key]!r}")
    _choice(config, "optimizer", OPTIMIZERS)
    _choice(config, "lr_schedule", LR_SCHEDULES)
    _choice(config, "accelerator", ACCELERATORS)
    config["accelerator"] = _resolve_accelerator(config["accelerator"])
    _number(config, "lr", 0.0, strict=True)
    _number(config, "weight_decay", 0.0, strict=False)
    _int(config, "batch_size", 1)
    _int(config, "max_epochs", 1, allow_none=True)
    _int(config, "max_steps", 1, allow_none=True)
    config["budget"] = check_budget(config["budget"], config)
    if config["max_epochs"] is None and config["max_steps"] is None and config["budget"] is None:
        raise UserError("one of 'max_epochs', 'max_steps' and 'budget' must be set")
    _int(config, "train_subset", 1, allow_none=True)
    _int(config, "seed", 0)
    _int(config, "devices", 1)
    _int(config, "grad_quality_every", 0, allow_none=True)
    if not isinstance(config["strategy"], str):
        raise UserError(f"'strategy' must be a name (auto, ddp, ...), got {config['strategy']!r}")
    for key in ("estimator_options", "model_options"):
        config[key] = _mapping(config[key], f"'{key}'")
    if config["robustness"] is True:
        config["robustness"] = {}
    elif config["robustness"] is False:
        config["robustness"] = None
    elif config["robustness"] is not None:
        config["robustness"] = _mapping(config["robustness"], "'robustness'")
    if config["init_from"] is not None and not isinstance(config["init_from"], str):
        raise UserError(f"'init_from' must be a checkpoint path or a run id, got {config['init_from']!r}")
    if config["data_dir"] is not None:
        config["data_dir"] = str(config["data_dir"])
    from lrbench.suite.training.threads import check_threads

    config["threads"] = check_threads(config["threads"])
    if not isinstance(config["progress"], bool):
        raise UserError(f"'progress' must be true or false, got {config['progress']!r}")


def check_against_task_and_estimator(config: dict[str, Any]) -> None:
    """Unknown task/estimator/option and invalid model options raise one-line errors."""
    from lrbench.estimators import EstimatorError, estimator_class
    from lrbench.tasks import get_task

    cls = estimator_class(config["estimator"])
    resolved = cls.resolve_options(config["estimator_options"])
    try:
        cls(**resolved)  # cross-option checks (check_options)
    except EstimatorError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as a user error naming the estimator
        raise UserError(f"estimator '{config['estimator']}' rejects its options: {exc}") from None
    # store every option explicitly (defaults filled), except a seed the user did not set:
    # the estimator's seed defaults to the run seed.
    if "seed" not in config["estimator_options"]:
        resolved.pop("seed", None)
    config["estimator_options"] = cls.stored_options(resolved)
    spec = get_task(config["task"])
    # store every model option explicitly (task defaults filled), so that a change of a task's default
    # model changes the run id instead of silently reusing results of the old model
    resolve = getattr(spec, "resolve_model_options", None)
    if resolve is not None:
        config["model_options"] = _plain(resolve(**config["model_options"]))
    try:
        _check_model_options(config["task"], json.dumps(config["model_options"], sort_keys=True, default=str))
    except TypeError as exc:
        raise UserError(f"task '{config['task']}' rejects model_options {config['model_options']}: "
                        f"{str(exc).splitlines()[0]}") from None
    if config["robustness"] is not None:
        _check_robustness(config, spec)


def _check_robustness(config: dict[str, Any], spec: Any) -> None:
    """The robustness settings check (``resolve_settings``) runs now, before any training."""
    from lrbench.suite.training.robustness_eval.evaluate import resolve_settings

    resolve_settings(spec.dataset, dict(config["robustness"]), config["seed"])


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (the JSON form, so a stored config equals a re-resolved one)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=256)
def _check_model_options(task: str, options_json: str) -> None:
    """Build the model once per (task, model_options): bad options raise TaskError/TypeError."""
    from lrbench.tasks import get_task

    get_task(task).build_model(**json.loads(options_json))
