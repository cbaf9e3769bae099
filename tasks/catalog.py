"""The registry of named tasks (and their variants)."""

from __future__ import annotations

from .errors import TaskError
from .models import build_mlp, build_plain_cnn
from .spec import TaskSpec

TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise AssertionError(f"task '{spec.name}' registered twice")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; unknown -> TaskError listing the valid names."""
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}'; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def list_tasks() -> list[TaskSpec]:
    """Every registered task (variants included), sorted by name."""
    return [TASKS[n] for n in sorted(TASKS)]


DIGITS_BUDGET = {"max_epochs": 20}

digits_mlp = register(TaskSpec(
    name="digits-mlp", family="mlp", dataset="digits", model_factory=build_mlp,
    model_options={"widths": (64,), "activation": "relu", "norm": "none"},
    description="MLP 64→64→10 on 8×8 digits", target=0.90, budget=DIGITS_BUDGET, batch_size=32, lr=3e-3))
register(digits_mlp.with_options("digits-mlp-tanh", activation="tanh"))

digits_cnn = register(TaskSpec(
    name="digits-cnn", family="cnn", dataset="digits", model_factory=build_plain_cnn,
    model_options={"channels": (16, 32), "kernel": 3, "pool": "max", "activation": "relu", "norm": "none"},
    description="small CNN (conv16, conv32, linear) on 8×8 digits", target=0.90, budget=DIGITS_BUDGET,
    batch_size=32, lr=3e-3))
