"""Sweeps: one YAML file per study in wandb's sweep format, run online by wandb or offline locally.

A sweep file (``suite/sweeps/*.yaml``) is a plain wandb sweep configuration::

    name: ulr-copies-sigma-baseline
    description: ...
    program: lrbench
    command: [${env}, ${program}, sweep, suite/sweeps/ulr_copies_sigma_baseline.yaml, --trial, ${args_no_hyphens}]
    method: grid                  # grid | random | bayes
    metric: {name: val_accuracy_best, goal: maximize}
    run_cap: 20                   # random: how many trials (required offline)
    parameters:
      task: {value: digits-mlp}                # constants: value
      estimator: {value: ulr}
      max_epochs: {value: 5}
      estimator_options:                       # nested parameters (or dotted names: estimator_options.copies)
        parameters:
          copies: {values: [8, 32, 128]}       # choices: values (+ probabilities for random)
          sigma: {distribution: log_uniform_values, min: 0.001, max: 0.1}

Parameter names are run-config keys (docs/RESULTS.md ``config``; ``estimator_options.X`` and
``model_options.X`` address one option), so one trial = one run of the suite's runner, and the same file
serves both modes:

* **online** (``lrbench sweep FILE``): ``wandb.sweep(config)`` creates the sweep on the W&B server and
  ``wandb.agent(sweep_id, function=...)`` runs trials in this process; each trial reads its parameters
  from ``wandb.config``, runs as one planned run (suite/cli/sweep_agent.py) into the results folder, and its wandb run
  gets the final metrics in its summary (so the sweep's ``metric`` — e.g. ``val_accuracy_best`` — is
  there for wandb's controller). ``wandb agent SWEEP_ID`` on other machines runs the file's ``command``,
  i.e. ``lrbench sweep FILE --trial key=value ...``: the same trial function.
* **offline** (``--offline``): ``grid`` expands the Cartesian product of every parameter's ``value`` /
  ``values`` (``int_uniform`` enumerates min..max); ``random`` draws ``run_cap`` points with
  ``random.Random(seed)`` from the parameters' distributions; ``bayes`` needs wandb's controller and is a
  one-line error. The points (suite/cli/sweep_points.py) run as one plan into one folder;
  identical points (same run id) run once, and a finished run is skipped when the sweep is run again.

Every problem with the file — YAML syntax, missing/unknown ``method``, no ``parameters``, a parameter
without values or distribution, an unknown config key, a bad value — is a one-line
:class:`~suite.errors.UserError` raised before anything runs or is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrbench.schema import ALL_KEYS
from lrbench.suite.cli.tokens import read_yaml
from lrbench.suite.errors import UserError

METHODS = ("grid", "random", "bayes")
TOP_KEYS = ("name", "description", "program", "command", "method", "metric", "parameters", "run_cap",
            "early_terminate", "project", "entity")
SPEC_KEYS = ("value", "values", "probabilities", "distribution", "min", "max", "mu", "sigma", "q", "parameters")
# distribution -> the keys it needs
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform_values": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma"),
}
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform")
ONLINE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file: ``parameters`` maps dotted config keys to normalised specs (each with a
    ``distribution``); ``raw`` is the file's mapping, what ``wandb.sweep`` receives."""

    name: str
    method: str
    parameters: dict[str, dict[str, Any]]
    metric: dict[str, Any] | None
    run_cap: int | None
    raw: dict[str, Any]
    source: str


# --------------------------------------------------------------------------- loading and validation
def fail(source: str, message: str) -> UserError:
    return UserError(f"sweep {source}: {message}")


def _number(source: str, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise fail(source, f"parameter '{name}': '{key}' must be a number, got {value!r}")
    return value


def _normalise(source: str, name: str, spec: Any) -> dict[str, Any]:
    """One parameter's spec with an explicit ``distribution`` (wandb's defaults: value -> constant,
    values -> categorical, int min/max -> int_uniform, float min/max -> uniform, mu/sigma -> normal)."""
    if not isinstance(spec, Mapping):
        raise fail(source, f"parameter '{name}' must be a mapping such as {{values: [...]}} or {{value: x}}, "
                            f"got {spec!r}")
    unknown = sorted(set(map(str, spec)) - set(SPEC_KEYS))
    if unknown:
        raise fail(source, f"parameter '{name}' has unknown key '{unknown[0]}'; valid keys: {', '.join(SPEC_KEYS)}")
    spec = dict(spec)
    dist = spec.get("distribution")
    if dist is None:
        if "value" in spec:
            dist = "constant"
        elif "values" in spec:
            dist = "categorical"
        elif "min" in spec and "max" in spec:
            both_int = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
            dist = "int_uniform" if both_int else "uniform"
        elif "mu" in spec and "sigma" in spec:
            dist = "normal"
        else:
            raise fail(source, f"parameter '{name}' has no values or distribution (give values: [...], "
                                "value: x, min/max, or distribution: ...)")
    if dist not in DISTRIBUTIONS:
        raise fail(source, f"parameter '{name}': unknown distribution '{dist}'; supported: "
                            f"{', '.join(DISTRIBUTIONS)}")
    missing = [k for k in DISTRIBUTIONS[dist] if k not in spec]
    if missing:
        raise fail(source, f"parameter '{name}': distribution '{dist}' needs '{missing[0]}'")
    if dist == "categorical":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise fail(source, f"parameter '{name}': 'values' must be a non-empty list, got {values!r}")
        probs = spec.get("probabilities")
        if probs is not None:
            if (not isinstance(probs, list) or len(probs) != len(values)
                    or any(_number(source, name, "probabilities", p) < 0 for p in probs)
                    or abs(sum(probs) - 1.0) > 1e-6):
                raise fail(source, f"parameter '{name}': 'probabilities' must be {len(values)} non-negative "
                                    "numbers summing to 1")
    for key in ("min", "max", "mu", "sigma", "q"):
        if key in spec and dist not in ("constant", "categorical"):
            _number(source, name, key, spec[key])
    if "min" in spec and "max" in spec and dist not in ("constant", "categorical") and spec["min"] > spec["max"]:
        raise fail(source, f"parameter '{name}': min {spec['min']} exceeds max {spec['max']}")
    if dist in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values") and spec["min"] <= 0:
        raise fail(source, f"parameter '{name}': distribution '{dist}' needs min > 0")
    if dist == "int_uniform" and not all(float(spec[k]).is_integer() for k in ("min", "max")):
        raise fail(source, f"parameter '{name}': int_uniform needs integer min and max")
    spec["distribution"] = dist
    return spec


def flatten_parameters(parameters: Mapping[str, Any], source: str = "", prefix: str = "") -> dict[str, dict[str, Any]]:
    """wandb's nested ``{estimator_options: {parameters: {copies: {...}}}}`` -> ``{"estimator_options.copies": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, spec in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(spec, Mapping) and "parameters" in spec:
            inner = spec["parameters"]
            if not isinstance(inner, Mapping) or not inner:
                raise fail(source, f"parameter '{name}': nested 'parameters' must be a non-empty mapping")
            if set(spec) - {"parameters"}:
                raise fail(source, f"parameter '{name}': nested 'parameters' cannot be mixed with "
                                    f"'{sorted(set(spec) - {'parameters'})[0]}'")
            out.update(flatten_parameters(inner, source, f"{name}."))
        else:
            out[name] = _normalise(source, name, spec)
    return out


def parse_sweep(data: Any, source: str = "<sweep>") -> Sweep:
    """Validate a sweep mapping (module docstring); every problem is a one-line UserError."""
    if not isinstance(data, Mapping):
        raise fail(source, f"must be a YAML mapping with method and parameters, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(TOP_KEYS))
    if unknown:
        raise fail(source, f"unknown key '{unknown[0]}'; valid keys: {', '.join(TOP_KEYS)}")
    method = data.get("method")
    if method is None:
        raise fail(source, f"missing 'method' (one of {', '.join(METHODS)})")
    if method not in METHODS:
        raise fail(source, f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    parameters = data.get("parameters")
    if not isinstance(parameters, Mapping) or not parameters:
        raise fail(source, "missing 'parameters' (a mapping of config key -> {values: [...]} / {value: x} / "
                            "{distribution: ...})")
    flat = flatten_parameters(parameters, source)
    for name in flat:
        head = name.split(".")[0]
        if head not in ALL_KEYS:
            raise fail(source, f"parameter '{name}' is not a config key; valid keys: {', '.join(sorted(ALL_KEYS))}")
    metric = data.get("metric")
    if metric is not None:
        if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str):
            raise fail(source, "'metric' must be a mapping with a 'name' (e.g. {name: val_accuracy_best, "
                                "goal: maximize})")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise fail(source, f"metric goal must be minimize or maximize, got {metric.get('goal')!r}")
    run_cap = data.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1):
        raise fail(source, f"'run_cap' must be a positive integer, got {run_cap!r}")
    command = data.get("command")
    if command is not None and (not isinstance(command, list) or not all(isinstance(c, str) for c in command)):
        raise fail(source, "'command' must be a list of strings")
    name = data.get("name") or Path(source).stem
    return Sweep(name=str(name), method=str(method), parameters=flat,
                 metric=dict(metric) if metric is not None else None, run_cap=run_cap, raw=dict(data),
                 source=source)


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep YAML file (a bare name looks in suite/sweeps/)."""
    path = Path(path)
    if not path.is_file():
        builtin = Path(__file__).resolve().parent.parent / "sweeps" / f"{path.name.removesuffix('.yaml')}.yaml"
        if "/" not in str(path) and builtin.is_file():
            path = builtin
        else:
            names = ", ".join(sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "sweeps").glob("*.yaml")))
            raise UserError(f"no sweep file '{path}'; built-in sweeps: {names}")
    data = read_yaml(path, what=f"sweep {path}: malformed YAML")
    return parse_sweep(data, str(path))
