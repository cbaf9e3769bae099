"""The one interface every gradient estimator implements, and its option handling.

An estimator turns ``(model, loss_fn, inputs, targets)`` into ``.grad`` on every trainable parameter::

    est = get_estimator("ulr", copies=64, sigma=0.01, seed=0)
    loss, logs = est.estimate(model, loss_fn, inputs, targets)
    optimizer.step()

``loss_fn(outputs, targets)`` returns per-sample losses (shape ``(N,)``; ``reduction='none'``).
``estimate`` *replaces* ``p.grad`` (it does not accumulate) and returns the mean noise-free loss of the
batch (a detached scalar) plus a flat dict of float logs. Estimators are seeded: the same ``seed`` and
the same sequence of calls give bit-identical gradients. ``state_dict`` holds what a resumed run needs
(step counter, adapted sigmas, ...).

This module depends on torch only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .seeding import counter_seed, fixed_global_randomness

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class EstimatorError(ValueError):
    """Bad estimator name/option, or a model the estimator cannot handle. The message is one line."""


class UnsupportedModuleError(EstimatorError):
    """A trainable parameter lives in a module type that has no per-module rule."""


@dataclass(frozen=True)
class Option:
    """Declaration of one estimator option.

    kind: 'int', 'float', 'bool', 'choice', 'int_or_list', 'float_or_list', 'str'.
    minimum / exclusive_minimum bound numeric values (element-wise for lists).
    added: the option was introduced after runs were recorded without it; at its default it is left out
    of a run's stored options (so the run ids of those earlier runs stay valid), see ``stored_options``.
    """

    default: Any
    kind: str
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    exclusive_minimum: float | None = None
    added: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": self.default, "type": self.kind, "help": self.help}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.exclusive_minimum is not None:
            out["exclusive_minimum"] = self.exclusive_minimum
        return out


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int,)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise EstimatorError(f"option '{name}' must be true or false, got {value!r}")


def _parse_scalar(name: str, value: Any, kind: str) -> int | float:
    caster = int if kind == "int" else float
    if isinstance(value, bool):
        raise EstimatorError(f"option '{name}' must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = caster(value) if kind == "float" else int(value, 10)
        except ValueError:
            raise EstimatorError(f"option '{name}' must be {'an integer' if kind == 'int' else 'a number'}, "
                                 f"got {value!r}") from None
    if kind == "int" and isinstance(value, float):
        if not value.is_integer():
            raise EstimatorError(f"option '{name}' must be an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, (int, float)):
        raise EstimatorError(f"option '{name}' must be a number, got {value!r}")
    return caster(value)


def _parse_list(name: str, value: Any, kind: str) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        value = [v for v in text.split(",") if v.strip()]
    if not isinstance(value, Sequence) or not value:
        raise EstimatorError(f"option '{name}' must be a number or a non-empty list of numbers, got {value!r}")
    return [_parse_scalar(name, v, kind) for v in value]


def coerce_option(name: str, option: Option, value: Any) -> Any:
    """Convert a raw value (from Python, YAML or the command line) to the option's type and check bounds."""
    if value is None and option.default is None:
        return None
    if option.kind == "bool":
        return _parse_bool(name, value)
    if option.kind == "str":
        return str(value)
    if option.kind == "choice":
        assert option.choices is not None
        if value not in option.choices:
            # Command-line values arrive as strings; match case-insensitively on their text.
            matches = [c for c in option.choices if str(c).lower() == str(value).lower()]
            if not matches:
                raise EstimatorError(
                    f"option '{name}' must be one of {', '.join(map(str, option.choices))}; got {value!r}")
            value = matches[0]
        return value
    if option.kind in ("int", "float"):
        values: list[Any] = [_parse_scalar(name, value, option.kind)]
        result: Any = values[0]
    elif option.kind in ("int_or_list", "float_or_list"):
        scalar_kind = option.kind.split("_")[0]
        is_list = isinstance(value, (list, tuple)) or (isinstance(value, str) and ("," in value or "[" in value))
        values = _parse_list(name, value, scalar_kind) if is_list else [_parse_scalar(name, value, scalar_kind)]
        result = values if is_list else values[0]
    else:  # pragma: no cover - programming error in an Option declaration
        raise AssertionError(f"unknown option kind {option.kind}")
    for v in values:
        if option.minimum is not None and v < option.minimum:
            raise EstimatorError(f"option '{name}' must be >= {option.minimum}, got {v!r}")
        if option.exclusive_minimum is not None and v <= option.exclusive_minimum:
            raise EstimatorError(f"option '{name}' must be > {option.exclusive_minimum}, got {v!r}")
    return result


SEED_OPTION = Option(0, "int", "seed of the estimator's random stream (same seed -> bit-identical gradients)")


class Estimator:
    """Base class. Subclasses declare ``name``, ``description`` and ``options`` and implement ``_estimate``
    (their own step); ``estimate`` wraps it with the bookkeeping every estimator shares."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    #: Where the estimator's randomness lives, which decides how ranks seed it in data-parallel training:
    #: ``"sample"`` (per-sample noise: every rank draws its own), ``"weight"`` (one direction in weight
    #: space shared by the whole batch: every rank must draw the same), ``"none"`` (deterministic).
    noise_scope: ClassVar[str] = "sample"
    #: The option that counts the estimator's independent copies (split across ranks in copy-parallel
    #: training), or ``None`` when it has none.
    copies_option: ClassVar[str | None] = None
    #: ``True`` when the estimate's expectation is *not* autograd's gradient (e.g. ALR's sign score,
    #: feedback alignment): ``lrbench check-estimator`` then reports the measured bias (cosine and norm
    #: ratio of the Monte-Carlo mean to autograd) instead of a pass/fail on unbiasedness.
    biased: ClassVar[bool] = False
    #: Options ``lrbench check-estimator`` uses for its float64 Monte-Carlo check (e.g. a small σ so the
    #: smoothing bias of a perturbation method lies far below the Monte-Carlo error); validated like any.
    conformance_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **opts: Any) -> None:
        self.opts = self.resolve_options(opts)    # the one place options are coerced
        self.step = 0
        self.check_options()

    # ----------------------------------------------------------------- options
    @classmethod
    def all_options(cls) -> dict[str, Option]:
        return {"seed": SEED_OPTION, **cls.options}

    @classmethod
    def resolve_options(cls, opts: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults, coerce types, and reject unknown names with a line listing the valid ones.

        Idempotent: ``resolve_options(resolve_options(o)) == resolve_options(o)``, so resolved options
        (a stored config, ``with_options``) validate again unchanged."""
        declared = cls.all_options()
        unknown = sorted(set(opts) - set(declared))
        if unknown:
            valid = ", ".join(sorted(declared)) or "(none)"
            raise EstimatorError(f"estimator '{cls.name}' takes no option '{unknown[0]}'; valid options: {valid}")
        return {key: coerce_option(key, opt, opts.get(key, opt.default)) for key, opt in declared.items()}

    @classmethod
    def stored_options(cls, resolved: dict[str, Any]) -> dict[str, Any]:
        """The options a run record stores (and its run id hashes): every resolved option except those
        declared ``added`` that sit at their default — a run that never set them is the run it was before
        they existed."""
        declared = cls.all_options()
        return {k: v for k, v in resolved.items()
                if not (k in declared and declared[k].added and v == declared[k].default)}

    def check_options(self) -> None:
        """Cross-option checks (e.g. antithetic needs an even number of copies). Override as needed."""

    def refuse_unswitched(self, dependents: dict[str, tuple[str, ...]]) -> None:
        """``{switch: (option, ...)}``: an option set to a value other than its default while its boolean
        switch is off would have no effect: one-line ``EstimatorError`` naming the switch. (Compared with
        the default, not "was it passed": stored configs and ``with_options`` pass every option.)"""
        declared = self.all_options()
        for switch, names in dependents.items():
            for name in names:
                if not self.opts[switch] and self.opts[name] != declared[name].default:
                    raise EstimatorError(f"option '{name}'={self.opts[name]!r} has no effect without "
                                         f"{switch}=true; set {switch}=true or drop '{name}'")

    def with_options(self, **changes: Any) -> Estimator:
        """A new estimator of this class with ``changes`` applied to the options, validated again (types,
        bounds and cross-option checks) and with this one's state (step counter, ...) carried over."""
        twin = type(self)(**{**self.opts, **changes})
        twin.load_state_dict(self.state_dict())
        return twin

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "description": cls.description,
            "options": {k: v.to_json() for k, v in cls.all_options().items()},
        }

    # ----------------------------------------------------------------- the job
    def estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                 targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """One gradient estimate (template method): clear ``.grad`` of every trainable parameter, run the
        estimator's own ``_estimate`` with torch's global RNG forked and seeded from
        ``counter_seed(seed, step, -1)`` (stochastic layers such as dropout draw keyed masks: same seed,
        same gradient), check that every trainable parameter got a gradient, and count the step."""
        for _, p in trainable_parameters(model):
            p.grad = None
        device = inputs.device if isinstance(inputs, torch.Tensor) else "cpu"
        with fixed_global_randomness(counter_seed(self.opts["seed"], self.step, -1), device):
            loss, logs = self._estimate(model, loss_fn, inputs, targets)
        check_every_parameter_has_grad(model, self.name)
        self.step += 1
        return loss, logs

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The estimator's own step: set ``.grad`` of every trainable parameter; return (mean clean
        loss, logs). ``self.step`` is the index of this step (incremented by ``estimate`` afterwards)."""
        raise NotImplementedError

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """Forward-equivalent passes of one ``estimate`` call (in units of one forward at batch size)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "opts": dict(self.opts), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.opts.items())
        return f"{type(self).__name__}({shown})"


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def check_every_parameter_has_grad(model: nn.Module, estimator_name: str) -> None:
    """A trainable parameter that silently receives no gradient is an error, never a silent zero."""
    for name, p in trainable_parameters(model):
        if p.grad is None:
            raise EstimatorError(
                f"estimator '{estimator_name}' produced no gradient for trainable parameter '{name}': "
                "it was not used in the forward pass (freeze it with requires_grad_(False) or use it)")


def set_grad(param: torch.Tensor, value: torch.Tensor) -> None:
    """Replace ``param.grad`` by ``value`` (cast to the parameter's dtype/device)."""
    param.grad = value.detach().to(dtype=param.dtype, device=param.device).reshape(param.shape)


def accumulate_grad(param: torch.Tensor, value: torch.Tensor) -> None:
    """``param.grad += value`` (creating it when absent)."""
    value = value.detach().to(dtype=param.dtype, device=param.device).reshape(param.shape)
    if param.grad is None:
        param.grad = value.clone()
    else:
        param.grad.add_(value)
