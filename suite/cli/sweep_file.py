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
  from ``wandb.config``, runs through :func:`suite.runner.run_one` into the results folder, and its wandb run
  gets the final metrics in its summary (so the sweep's ``metric`` — e.g. ``val_accuracy_best`` — is
  there for wandb's controller). ``wandb agent SWEEP_ID`` on other machines runs the file's ``command``,
  i.e. ``lrbench sweep FILE --trial key=value ...``: the same trial function.
* **offline** (``--offline``): ``grid`` expands the Cartesian product of every parameter's ``value`` /
  ``values`` (``int_uniform`` enumerates min..max); ``random`` draws ``run_cap`` points with
  ``random.Random(seed)`` from the parameters' distributions; ``bayes`` needs wandb's controller and is a
  one-line error. The points run through the same runner and results store (``run_suite``) into one folder;
  identical points (same run id) run once, and a finished run is skipped when the sweep is run again.

Every problem with the file — YAML syntax, missing/unknown ``method``, no ``parameters``, a parameter
without values or distribution, an unknown config key, a bad value — is a one-line
:class:`~suite.errors.UserError` raised before anything runs or is written.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrbench.suite.cli.suite_files import read_yaml
from lrbench.suite.errors import UserError, user_error_types

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
def _fail(source: str, message: str) -> UserError:
    return UserError(f"sweep {source}: {message}")


def _number(source: str, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _fail(source, f"parameter '{name}': '{key}' must be a number, got {value!r}")
    return value


def _normalise(source: str, name: str, spec: Any) -> dict[str, Any]:
    """One parameter's spec with an explicit ``distribution`` (wandb's defaults: value -> constant,
    values -> categorical, int min/max -> int_uniform, float min/max -> uniform, mu/sigma -> normal)."""
    if not isinstance(spec, Mapping):
        raise _fail(source, f"parameter '{name}' must be a mapping such as {{values: [...]}} or {{value: x}}, "
                            f"got {spec!r}")
    unknown = sorted(set(map(str, spec)) - set(SPEC_KEYS))
    if unknown:
        raise _fail(source, f"parameter '{name}' has unknown key '{unknown[0]}'; valid keys: {', '.join(SPEC_KEYS)}")
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
            raise _fail(source, f"parameter '{name}' has no values or distribution (give values: [...], "
                                "value: x, min/max, or distribution: ...)")
    if dist not in DISTRIBUTIONS:
        raise _fail(source, f"parameter '{name}': unknown distribution '{dist}'; supported: "
                            f"{', '.join(DISTRIBUTIONS)}")
    missing = [k for k in DISTRIBUTIONS[dist] if k not in spec]
    if missing:
        raise _fail(source, f"parameter '{name}': distribution '{dist}' needs '{missing[0]}'")
    if dist == "categorical":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise _fail(source, f"parameter '{name}': 'values' must be a non-empty list, got {values!r}")
        probs = spec.get("probabilities")
        if probs is not None:
            if (not isinstance(probs, list) or len(probs) != len(values)
                    or any(_number(source, name, "probabilities", p) < 0 for p in probs)
                    or abs(sum(probs) - 1.0) > 1e-6):
                raise _fail(source, f"parameter '{name}': 'probabilities' must be {len(values)} non-negative "
                                    "numbers summing to 1")
    for key in ("min", "max", "mu", "sigma", "q"):
        if key in spec and dist not in ("constant", "categorical"):
            _number(source, name, key, spec[key])
    if "min" in spec and "max" in spec and dist not in ("constant", "categorical") and spec["min"] > spec["max"]:
        raise _fail(source, f"parameter '{name}': min {spec['min']} exceeds max {spec['max']}")
    if dist in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values") and spec["min"] <= 0:
        raise _fail(source, f"parameter '{name}': distribution '{dist}' needs min > 0")
    if dist == "int_uniform" and not all(float(spec[k]).is_integer() for k in ("min", "max")):
        raise _fail(source, f"parameter '{name}': int_uniform needs integer min and max")
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
                raise _fail(source, f"parameter '{name}': nested 'parameters' must be a non-empty mapping")
            if set(spec) - {"parameters"}:
                raise _fail(source, f"parameter '{name}': nested 'parameters' cannot be mixed with "
                                    f"'{sorted(set(spec) - {'parameters'})[0]}'")
            out.update(flatten_parameters(inner, source, f"{name}."))
        else:
            out[name] = _normalise(source, name, spec)
    return out


def parse_sweep(data: Any, source: str = "<sweep>") -> Sweep:
    """Validate a sweep mapping (module docstring); every problem is a one-line UserError."""
    from lrbench.suite.cli.suite_files import ALL_KEYS

    if not isinstance(data, Mapping):
        raise _fail(source, f"must be a YAML mapping with method and parameters, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(TOP_KEYS))
    if unknown:
        raise _fail(source, f"unknown key '{unknown[0]}'; valid keys: {', '.join(TOP_KEYS)}")
    method = data.get("method")
    if method is None:
        raise _fail(source, f"missing 'method' (one of {', '.join(METHODS)})")
    if method not in METHODS:
        raise _fail(source, f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    parameters = data.get("parameters")
    if not isinstance(parameters, Mapping) or not parameters:
        raise _fail(source, "missing 'parameters' (a mapping of config key -> {values: [...]} / {value: x} / "
                            "{distribution: ...})")
    flat = flatten_parameters(parameters, source)
    for name in flat:
        head = name.split(".")[0]
        if head not in ALL_KEYS:
            raise _fail(source, f"parameter '{name}' is not a config key; valid keys: {', '.join(sorted(ALL_KEYS))}")
    metric = data.get("metric")
    if metric is not None:
        if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str):
            raise _fail(source, "'metric' must be a mapping with a 'name' (e.g. {name: val_accuracy_best, "
                                "goal: maximize})")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise _fail(source, f"metric goal must be minimize or maximize, got {metric.get('goal')!r}")
    run_cap = data.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1):
        raise _fail(source, f"'run_cap' must be a positive integer, got {run_cap!r}")
    command = data.get("command")
    if command is not None and (not isinstance(command, list) or not all(isinstance(c, str) for c in command)):
        raise _fail(source, "'command' must be a list of strings")
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


# --------------------------------------------------------------------------- points
def grid_values(name: str, spec: Mapping[str, Any], source: str = "") -> list[Any]:
    """The values a grid takes for one parameter (constant, categorical, int_uniform min..max)."""
    dist = spec["distribution"]
    if dist == "constant":
        return [spec["value"]]
    if dist == "categorical":
        return list(spec["values"])
    if dist == "int_uniform":
        return list(range(int(spec["min"]), int(spec["max"]) + 1))
    raise _fail(source, f"grid sweeps need value/values (or int_uniform) for every parameter; '{name}' has "
                        f"distribution '{dist}' (use method: random)")


def sample_value(spec: Mapping[str, Any], rng: random.Random) -> Any:
    """One draw from a parameter's distribution (wandb's definitions: log_uniform takes exponents,
    log_uniform_values takes the values; q_* round to multiples of q, default 1)."""
    dist = spec["distribution"]
    q = float(spec.get("q", 1))

    def quantise(x: float) -> float:
        return round(x / q) * q

    if dist == "constant":
        return spec["value"]
    if dist == "categorical":
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    lo, hi = spec.get("min"), spec.get("max")
    if dist == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if dist == "uniform":
        return rng.uniform(lo, hi)
    if dist == "q_uniform":
        return quantise(rng.uniform(lo, hi))
    if dist == "log_uniform":
        return math.exp(rng.uniform(lo, hi))
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if dist == "q_log_uniform_values":
        return quantise(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if dist == "inv_log_uniform_values":
        return 1.0 / math.exp(rng.uniform(math.log(1.0 / hi), math.log(1.0 / lo)))
    mu, sigma = spec["mu"], spec["sigma"]
    if dist == "normal":
        return rng.gauss(mu, sigma)
    if dist == "q_normal":
        return quantise(rng.gauss(mu, sigma))
    if dist == "log_normal":
        return math.exp(rng.gauss(mu, sigma))
    if dist == "q_log_normal":
        return quantise(math.exp(rng.gauss(mu, sigma)))
    raise AssertionError(f"unhandled distribution {dist}")  # pragma: no cover - parse_sweep checks names


def offline_points(sweep: Sweep, seed: int = 0) -> list[dict[str, Any]]:
    """The parameter points an offline sweep runs: the grid, or ``run_cap`` random draws (seeded)."""
    if sweep.method == "bayes":
        raise _fail(sweep.source, "method 'bayes' needs the wandb sweep controller (online); run it without "
                                  "--offline, or use method grid or random offline")
    names = list(sweep.parameters)
    if sweep.method == "grid":
        axes = [grid_values(n, sweep.parameters[n], sweep.source) for n in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
    if sweep.run_cap is None:
        raise _fail(sweep.source, "method 'random' offline needs 'run_cap' (the number of trials to draw)")
    rng = random.Random(seed)
    return [{n: sample_value(sweep.parameters[n], rng) for n in names} for _ in range(sweep.run_cap)]


def point_from_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A (nested) wandb.config -> dotted run-config keys (``_wandb`` and other private keys dropped)."""
    from lrbench.suite.cli.suite_files import MAPPING_KEYS

    out: dict[str, Any] = {}
    for key, value in config.items():
        if str(key).startswith("_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name.split(".")[0] in MAPPING_KEYS:
            out.update(point_from_config(value, f"{name}."))
        else:
            out[name] = value
    return out


def trial_configs(points: Sequence[Mapping[str, Any]], overrides: Mapping[str, Any] | None = None,
                  source: str = "<sweep>") -> list[dict[str, Any]]:
    """Resolved run configs of sweep points (through ``suite.config.expand_suite``), identical runs once.

    A point's ``seed`` becomes the run seed; ``overrides`` (command-line ``key=value``, e.g. a tiny
    budget) apply to every trial after the point's values.
    """
    from lrbench.suite.cli.suite_files import expand_suite
    from lrbench.suite.training import tracking
    from lrbench.suite.training.gradient_sync import check_parallel
    from lrbench.suite.training.results_store import run_id

    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for point in points:
        run = dict(point)
        seed = run.pop("seed", None)
        extra = {"seed": seed} if seed is not None else {}
        try:
            expanded = expand_suite({"runs": [run]}, {**extra, **dict(overrides or {})})
        except user_error_types() as exc:  # bad value, unknown option/task: name the sweep file
            raise _fail(source, str(exc).strip().splitlines()[0]) from None
        for config in expanded:
            check_parallel(config)
            tracking.resolve_wandb(config["wandb"])
            rid = run_id(config)
            if rid not in seen:
                seen.add(rid)
                configs.append(config)
    return configs


# --------------------------------------------------------------------------- running
def offline_configs(sweep: Sweep, overrides: Mapping[str, Any] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The resolved run configs of an offline sweep (``offline_points`` -> ``trial_configs``); they run
    through ``suite.runner.run_suite`` into one results folder."""
    return trial_configs(offline_points(sweep, seed), overrides, sweep.source)


def _with_timeout(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """``fn()`` in a daemon thread; UserError when it neither returns nor raises within ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise UserError(f"could not {what} within {seconds:.0f} s (no network?); use --offline to run the sweep locally")
    if "error" in box:
        exc = box["error"]
        text = str(exc).strip().splitlines()
        raise UserError(f"could not {what}: {type(exc).__name__}{': ' + text[0] if text else ''}") from None
    return box.get("value")


def run_trial(sweep: Sweep, out_dir: Path | str, overrides: Mapping[str, Any] | None = None,
              args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One trial of an online sweep: the current wandb run's config (the agent's sampled point) plus
    ``args`` (``key=value``, what ``wandb agent`` passes through the file's command) -> ``run_one``.

    The run's record lands in ``out_dir`` like any other, and its metrics in the wandb run's summary.
    """
    import wandb

    from lrbench.suite.cli.suite_files import parse_assignments
    from lrbench.suite.training import tracking
    from lrbench.suite.training.runner import run_one

    own = wandb.run is None
    if own:  # started by `wandb agent` (the file's command): the agent's env names the sweep and the run
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE", "").lower()  # the agent's (online unless the env says otherwise)
        mode = mode if mode in ("online", "offline", "disabled") else "online"
        run = wandb.init(dir=str(out_dir), mode=mode,
                         settings=wandb.Settings(init_timeout=tracking.init_timeout(), console="off"))
    else:
        run = wandb.run
    try:
        point = {**point_from_config(dict(run.config)), **parse_assignments(args, "trial argument")}
        configs = trial_configs([point], {**dict(overrides or {}), "wandb": True}, sweep.source)
        return [run_one(config, out_dir) for config in configs]
    finally:
        if own:
            wandb.finish()


def run_online(sweep: Sweep, out_dir: Path | str, overrides: Mapping[str, Any] | None = None, *,
               count: int | None = None, sweep_id: str | None = None, project: str | None = None,
               entity: str | None = None) -> str:
    """Create the sweep on the W&B server (unless ``sweep_id`` joins one) and run an agent here."""
    from lrbench.suite.training import tracking

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        raise UserError(f"an online sweep needs the W&B server but WANDB_MODE={os.environ['WANDB_MODE']}; "
                        "use --offline to run the sweep locally")
    try:
        import wandb
    except ImportError:
        raise UserError("online sweeps need the wandb package; use --offline to run the sweep locally") from None
    if not tracking.has_api_key():
        raise UserError("an online sweep needs a W&B API key (WANDB_API_KEY or `wandb login`); use --offline "
                        "to run the sweep locally")
    # a trial's points must resolve: check the grid's first point (or one draw) before creating anything
    rng = random.Random(0)
    first = (offline_points(sweep)[:1] if sweep.method == "grid"
             else [{n: sample_value(spec, rng) for n, spec in sweep.parameters.items()}])
    trial_configs(first, overrides, sweep.source)
    project = project or sweep.raw.get("project") or os.environ.get("WANDB_PROJECT") or tracking.DEFAULT_PROJECT
    entity = entity or sweep.raw.get("entity")
    if sweep_id is None:
        sweep_id = _with_timeout(lambda: wandb.sweep(sweep=dict(sweep.raw), project=project, entity=entity),
                                 ONLINE_TIMEOUT_S, "create the sweep on the W&B server")
    print(f"lrbench sweep: wandb sweep {sweep_id} ({sweep.method}, project {project}); "
          f"more agents: wandb agent {entity + '/' if entity else ''}{project}/{sweep_id}")
    wandb.agent(sweep_id, function=lambda: run_trial(sweep, out_dir, overrides), project=project, entity=entity,
                count=count)
    return str(sweep_id)
