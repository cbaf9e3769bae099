"""``TaskSpec``: what to train (dataset + model factory), how to score it, and the default budget.

AlgoPerf-style: a spec names its dataset, model family and default model options, the per-sample loss,
the metric (accuracy: ``correct`` counts right predictions, per character for the language model),
the target accuracy for time-to-target, the default budget, batch size, optimizer and learning rate,
and the seeds' default settings for each estimator.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import TaskData
from .datasets import DatasetInfo, get_dataset, load_dataset
from .errors import TaskError
from .models.layers import count_parameters

ModelFactory = Callable[..., nn.Sequential]


def per_sample_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample, shape (N,). Sequence outputs (N, T, V) with targets (N, T) give the mean
    over the T positions of each sample."""
    if outputs.ndim == 3:
        return F.cross_entropy(outputs.transpose(1, 2), targets, reduction="none").mean(dim=1)
    return F.cross_entropy(outputs, targets, reduction="none")


def count_correct(outputs: torch.Tensor, targets: torch.Tensor) -> int:
    """Number of correct arg-max predictions (per position for sequence outputs): the accuracy numerator.
    The denominator is ``targets.numel()``."""
    return int((outputs.argmax(dim=-1) == targets).sum().item())


def _parse_sequence(name: str, value: Any, default: tuple[Any, ...]) -> tuple[Any, ...]:
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        value = [v for v in text.replace(" ", ",").split(",") if v]
    if not isinstance(value, (list, tuple)):
        raise TaskError(f"model option '{name}' must be a list like {','.join(map(str, default))}, got {value!r}")
    kind = type(default[0]) if default else int
    try:
        return tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise TaskError(f"model option '{name}' must be a list of {kind.__name__}s, got {value!r}") from None


def coerce_model_option(name: str, default: Any, value: Any) -> Any:
    """Convert a raw override (Python value or command-line string) to the type of its default."""
    if isinstance(default, tuple):
        return _parse_sequence(name, value, default)
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise TaskError(f"model option '{name}' must be true or false, got {value!r}")
    if isinstance(default, (int, float)):
        kind = type(default)
        try:
            out = kind(value) if not (kind is int and isinstance(value, float) and not value.is_integer()) else None
        except (TypeError, ValueError):
            out = None
        if out is None or isinstance(value, bool):
            raise TaskError(f"model option '{name}' must be {'an integer' if kind is int else 'a number'}, "
                            f"got {value!r}")
        return out
    if isinstance(default, str):
        return str(value)
    return value


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task. ``build_model(**overrides)`` -> ``nn.Sequential`` of blocks (inputs in [0, 1])."""

    name: str
    family: str
    dataset: str
    model_factory: ModelFactory
    model_options: dict[str, Any]
    description: str
    target: float
    budget: dict[str, float]
    batch_size: int
    lr: float
    optimizer: str = "adam"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    lr_schedule: str = "constant"
    estimator_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)
    variant_of: str | None = None
    metric_name: str = "accuracy"

    def __post_init__(self) -> None:
        # Each spec owns its option dicts (catalog entries share literals; callers may mutate copies).
        for name in ("model_options", "budget", "optimizer_options", "estimator_defaults", "data_options"):
            object.__setattr__(self, name, copy.deepcopy(getattr(self, name)))

    # ------------------------------------------------------------ data
    @property
    def info(self) -> DatasetInfo:
        return get_dataset(self.dataset)

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = self.info.input_shape
        if "seq_len" in self.data_options:
            shape = (int(self.data_options["seq_len"]),)
        return shape

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def max_epochs(self) -> float:
        return float(self.budget.get("max_epochs", 1))

    def load_data(self, data_dir: str | os.PathLike[str] | None = None, device: Any = "cpu",
                  split_seed: int = 0, **data_options: Any) -> TaskData:
        """Load the task's dataset (train/val/test tensors on ``device``); options override ``data_options``.

        The train/val/test split is part of the task, not of the run: it depends on ``split_seed`` only
        (default 0), so runs with different seeds are scored on the same validation and test sets.
        """
        return load_dataset(self.dataset, data_dir=data_dir, device=device, seed=split_seed,
                            **{**self.data_options, **data_options})

    # ------------------------------------------------------------ model
    def resolve_model_options(self, **overrides: Any) -> dict[str, Any]:
        """Defaults updated by ``overrides``; an unknown name -> TaskError listing the valid ones."""
        unknown = sorted(set(overrides) - set(self.model_options))
        if unknown:
            raise TaskError(f"task '{self.name}' has no model option '{unknown[0]}'; valid options: "
                            f"{', '.join(sorted(self.model_options))}")
        out = dict(self.model_options)
        for key, value in overrides.items():
            out[key] = coerce_model_option(key, self.model_options[key], value)
        return out

    def build_model(self, **overrides: Any) -> nn.Sequential:
        """A freshly initialised model (seed it with ``torch.manual_seed`` first for reproducibility)."""
        info = self.info
        return self.model_factory(self.input_shape, self.num_classes, info.mean, info.std,
                                  **self.resolve_model_options(**overrides))

    def num_parameters(self, **overrides: Any) -> int:
        """Trainable parameter count of the model with these options (built on the meta device: no memory,
        no initialisation cost, global RNG untouched)."""
        with torch.device("meta"):
            return count_parameters(self.build_model(**overrides))

    # ------------------------------------------------------------ scoring
    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample loss, shape (N,) (cross-entropy; mean over positions for sequences)."""
        return per_sample_cross_entropy(outputs, targets)

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> int:
        """Number of correct predictions (accuracy numerator; denominator ``targets.numel()``)."""
        return count_correct(outputs, targets)

    metric = correct

    def accuracy(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return self.correct(outputs, targets) / max(1, targets.numel())

    # ------------------------------------------------------------ description
    def with_options(self, name: str, description: str | None = None, **model_overrides: Any) -> TaskSpec:
        """A variant: same task with some model options changed (e.g. another activation)."""
        options = self.resolve_model_options(**model_overrides)
        return replace(self, name=name, model_options=options, variant_of=self.variant_of or self.name,
                       description=description or f"{self.description} [variant: "
                       + ", ".join(f"{k}={v}" for k, v in model_overrides.items()) + "]")

    def to_json(self) -> dict[str, Any]:
        """Everything ``lrbench list tasks --json`` shows (JSON-serialisable), parameter count included."""
        def plain(v: Any) -> Any:
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        n_params = self.num_parameters()
        return {
            "name": self.name,
            "family": self.family,
            "dataset": self.dataset,
            "description": self.description,
            "variant_of": self.variant_of,
            "num_parameters": n_params,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "model_options": plain(self.model_options),
            "data_options": plain(self.data_options),
            "metric": self.metric_name,
            "target": self.target,
            "budget": plain(self.budget),
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "optimizer_options": plain(self.optimizer_options),
            "lr": self.lr,
            "lr_schedule": self.lr_schedule,
            "estimator_defaults": plain(self.estimator_defaults),
        }
