"""Sweep points: the grid or seeded random draws of a sweep file's parameters (wandb's sampling
definitions, re-implemented for offline sweeps: wandb's own sampler needs its server), and the resolved run
configs of points."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from lrbench.schema import MAPPING_KEYS, run_id
from lrbench.suite.errors import user_error_types

from .sweep_file import Sweep, fail


def grid_values(name: str, spec: Mapping[str, Any], source: str = "") -> list[Any]:
    """The values a grid takes for one parameter (constant, categorical, int_uniform min..max)."""
    dist = spec["distribution"]
    if dist == "constant":
        return [spec["value"]]
    if dist == "categorical":
        return list(spec["values"])
    if dist == "int_uniform":
        return list(range(int(spec["min"]), int(spec["max"]) + 1))
    raise fail(source, f"grid sweeps need value/values (or int_uniform) for every parameter; '{name}' has "
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
        raise fail(sweep.source, "method 'bayes' needs the wandb sweep controller (online); run it without "
                                  "--offline, or use method grid or random offline")
    names = list(sweep.parameters)
    if sweep.method == "grid":
        axes = [grid_values(n, sweep.parameters[n], sweep.source) for n in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
    if sweep.run_cap is None:
        raise fail(sweep.source, "method 'random' offline needs 'run_cap' (the number of trials to draw)")
    rng = random.Random(seed)
    return [{n: sample_value(sweep.parameters[n], rng) for n in names} for _ in range(sweep.run_cap)]


def point_from_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A (nested) wandb.config -> dotted run-config keys (``_wandb`` and other private keys dropped)."""
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
    """Resolved run configs of sweep points (through ``suite.cli.suite_files.expand_suite``), identical runs once.

    A point's ``seed`` becomes the run seed; ``overrides`` (command-line ``key=value``, e.g. a tiny
    budget) apply to every trial after the point's values.
    """
    from lrbench.suite.cli.suite_files import expand_suite

    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for point in points:
        run = dict(point)
        seed = run.pop("seed", None)
        extra = {"seed": seed} if seed is not None else {}
        try:
            expanded = expand_suite({"runs": [run]}, {**extra, **dict(overrides or {})})
        except user_error_types() as exc:  # bad value, unknown option/task: name the sweep file
            raise fail(source, str(exc).strip().splitlines()[0]) from None
        for config in expanded:  # the plan made of them checks devices, wandb, data (suite.cli.preflight)
            rid = run_id(config)
            if rid not in seen:
                seen.add(rid)
                configs.append(config)
    return configs


def offline_configs(sweep: Sweep, overrides: Mapping[str, Any] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The resolved run configs of an offline sweep (``offline_points`` -> ``trial_configs``); they run
    through one plan (``suite.cli.plan``) into one results folder."""
    return trial_configs(offline_points(sweep, seed), overrides, sweep.source)
