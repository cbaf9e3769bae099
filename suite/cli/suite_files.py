"""Run configurations: the resolved config of one run, and suites (YAML grids/lists of runs).

A *resolved config* has exactly the keys of ``lrbench.schema.RunConfig`` (docs/RESULTS.md). Each value comes from,
lowest precedence first:

1. ``RunConfig`` defaults, then the task spec (``batch_size``, ``lr``, ``optimizer``, ``max_epochs``,
   ``weight_decay``, ``lr_schedule`` when the spec has them; ``spec.estimator_defaults[estimator]``
   for ``estimator_options``);
2. the suite's ``defaults:`` block;
3. the suite's per-estimator block ``estimators: {ulr: {...}}``, the per-task block ``tasks: {...}``,
   then each ``rules:`` entry whose ``match`` fits the run (``{match: {task: digits-vit,
   estimator: [ulr, alr]}, set: {max_epochs: 10}}``; a list in ``match`` means any of);
4. the run itself (one ``grid`` combination, or one ``runs:`` entry);
5. command-line overrides ``key=value`` (every run; ``estimator_options.X`` / ``model_options.X`` only
   reach runs whose estimator declares option X, resp. all runs).

Mappings (``estimator_options``, ``model_options``, ``robustness``) merge key by key; dotted keys
(``estimator_options.copies: 32``) address one entry. A suite file looks like::

    description: ...
    defaults: {max_epochs: 3, train_subset: 1000}
    grid: {task: [digits-mlp, digits-cnn], estimator: [bp, ulr]}   # Cartesian product
    runs: [{task: digits-mlp, estimator: alr, lr: 0.01}]           # extra runs, appended
    estimators: {ulr: {estimator_options: {copies: 32}}}
    tasks: {digits-cnn: {batch_size: 32}}
    rules: [{match: {task: digits-vit, estimator: [ulr, alr]}, set: {estimator_options.copies: 8}}]
    exclude: [{task: digits-mlp, estimator: xconv}]                  # drop matching combinations
    seeds: [0, 1]

A YAML file without ``grid``/``runs`` is one run: its top-level keys are config keys (plus ``seeds``).
Every error is a one-line :class:`~suite.errors.UserError` raised before anything runs.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrbench.schema import ALL_KEYS, RESULT_KEYS, run_id
from lrbench.suite.errors import UserError

from .config_checks import check_against_task_and_estimator, check_values
from .config_layers import MISSING, check_key, get_dotted, merge
from .config_layers import mapping_value as _mapping
from .tokens import parse_assignments, read_yaml

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"

# Taken from the task spec (``max_epochs``/``max_steps`` from ``spec.budget``, ``weight_decay`` from
# ``spec.optimizer_options`` when given there).
SPEC_DEFAULT_KEYS = ("batch_size", "lr", "optimizer", "max_epochs", "weight_decay", "lr_schedule")
SUITE_KEYS = ("name", "description", "defaults", "grid", "runs", "estimators", "tasks", "rules", "exclude", "seeds")



# --------------------------------------------------------------------------- small helpers
def task_defaults(task: str, estimator: str) -> dict[str, Any]:
    """Defaults a task spec provides: training hyper-parameters and ``estimator_defaults[estimator]``."""
    from lrbench.tasks import get_task

    spec = get_task(task)
    out: dict[str, Any] = {}
    budget = dict(getattr(spec, "budget", None) or {})
    sources = {**budget, **(getattr(spec, "optimizer_options", None) or {})}
    for key in SPEC_DEFAULT_KEYS:
        value = getattr(spec, key, None) if key not in sources else sources[key]
        if value is not None:
            out[key] = value
    if budget.get("max_steps") is not None:
        out["max_steps"] = budget["max_steps"]
    for key in ("max_epochs", "max_steps"):  # budgets may be floats (20.0)
        if isinstance(out.get(key), float) and out[key].is_integer():
            out[key] = int(out[key])
    est_defaults = getattr(spec, "estimator_defaults", None) or {}
    out["estimator_options"] = dict(est_defaults.get(estimator, {}))
    return out


# --------------------------------------------------------------------------- suites
def load_suite(suite: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A suite mapping from a dict, a built-in name (``quick`` -> suite/suites/quick.yaml) or a YAML path."""
    if isinstance(suite, Mapping):
        data: Any = dict(suite)
    else:
        text = str(suite)
        path = Path(text)
        builtin = SUITES_DIR / f"{text}.yaml"
        if not path.is_file() and builtin.is_file() and "/" not in text:
            path = builtin
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
            raise UserError(f"no suite or config file '{text}'; built-in suites: {names}")
        data = read_yaml(path, what=f"malformed YAML in {path}")
    if not isinstance(data, Mapping):
        raise UserError(f"a suite must be a YAML mapping, got {type(data).__name__}")
    if "grid" not in data and "runs" not in data:  # a single-run config file
        data = {"defaults": {k: v for k, v in data.items() if k not in SUITE_KEYS},
                **{k: v for k, v in data.items() if k in SUITE_KEYS and k != "defaults"},
                "runs": [dict(_mapping(data.get("defaults"), "'defaults'"))]}
    unknown = sorted(set(map(str, data)) - set(SUITE_KEYS))
    if unknown:
        raise UserError(f"unknown suite key '{unknown[0]}'; valid suite keys: {', '.join(SUITE_KEYS)}")
    return dict(data)


def _combinations(suite: Mapping[str, Any]) -> list[dict[str, Any]]:
    grid = _mapping(suite.get("grid"), "'grid'")
    runs: list[dict[str, Any]] = []
    if grid:
        keys = list(grid)
        values = [v if isinstance(v, list) else [v] for v in grid.values()]
        runs.extend(dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values))
    listed = suite.get("runs") or []
    if not isinstance(listed, list):
        raise UserError("'runs' must be a list of mappings")
    runs.extend(_mapping(r, f"runs[{i}]") for i, r in enumerate(listed))
    excludes = suite.get("exclude") or []
    if not isinstance(excludes, list):
        raise UserError("'exclude' must be a list of mappings")
    excludes = [_mapping(e, f"exclude[{i}]") for i, e in enumerate(excludes)]
    return [r for r in runs if not any(all(r.get(k) == v for k, v in e.items()) for e in excludes)]


def _seeds(value: Any, where: str) -> list[int]:
    seeds = value if isinstance(value, list) else [value]
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise UserError(f"{where} must be a non-negative integer or a non-empty list of them, got {value!r}")
    return list(seeds)


def _apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """CLI overrides; ``estimator_options.X`` only reaches estimators that declare option X."""
    from lrbench.estimators import estimator_class

    declared = set(estimator_class(config["estimator"]).all_options()) if isinstance(config["estimator"], str) else set()
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head == "estimator_options" and rest and rest.split(".")[0] not in declared:
            continue
        config = merge(config, {key: value}, "the command line")
    return config


def resolve_config(run: Mapping[str, Any], suite: Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """One resolved, validated config (module docstring for the precedence order)."""
    suite = suite or {}
    overrides = dict(overrides or {})
    layers: list[tuple[Mapping[str, Any], str]] = [(_mapping(suite.get("defaults"), "'defaults'"), "'defaults'")]
    partial = merge(merge({}, layers[0][0], "'defaults'"), run, "a run")
    partial = merge(partial, {k: v for k, v in overrides.items() if k in ("task", "estimator")}, "the command line")
    task, estimator = partial.get("task"), partial.get("estimator", RESULT_KEYS["estimator"])
    if not isinstance(task, str) or not task:
        raise UserError(f"every run needs a 'task' (see 'lrbench list tasks'), got {task!r}")
    if not isinstance(estimator, str):
        raise UserError(f"'estimator' must be a name (see 'lrbench list estimators'), got {estimator!r}")
    config = {**copy.deepcopy(ALL_KEYS), **task_defaults(task, estimator)}
    config = merge(config, layers[0][0], "'defaults'")
    blocks = (("estimators", estimator), ("tasks", task))
    for block, name in blocks:
        entries = _mapping(suite.get(block), f"'{block}'")
        config = merge(config, _mapping(entries.get(name), f"'{block}.{name}'"), f"'{block}.{name}'")
    rules = suite.get("rules") or []
    if not isinstance(rules, list):
        raise UserError("'rules' must be a list of {match: {...}, set: {...}}")
    probe = merge(config, run, "a run")
    for i, rule in enumerate(rules):
        rule = _mapping(rule, f"rules[{i}]")
        if set(rule) != {"match", "set"}:
            raise UserError(f"rules[{i}] must have exactly the keys 'match' and 'set'")
        if _rule_matches(probe, _mapping(rule["match"], f"rules[{i}].match"), f"rules[{i}].match"):
            config = merge(config, _mapping(rule["set"], f"rules[{i}].set"), f"rules[{i}].set")
    config = merge(config, run, "a run")
    config = _apply_overrides(config, overrides)
    if seed is not None:
        config["seed"] = seed
    check_values(config)
    check_against_task_and_estimator(config)
    return config


def _rule_matches(config: Mapping[str, Any], match: Mapping[str, Any], where: str) -> bool:
    for key, wanted in match.items():
        check_key(str(key), where)
        actual = get_dotted(config, str(key))
        if actual not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def expand_suite(suite: Mapping[str, Any] | str | Path, overrides: Mapping[str, Any] | Sequence[str] = (),
                 only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every resolved run config of ``suite`` (× seeds), after ``overrides``, filtered by ``only``.

    ``overrides``: ``{"max_epochs": 1}`` or ``["max_epochs=1", "seeds=[0,1]"]`` (``seeds``/``seed`` replace
    the suite's seeds). ``only``: ``["task=digits-mlp", "estimator=ulr"]`` keeps runs whose resolved value
    equals the given one (dotted keys allowed). Raises UserError (one line) on any problem.
    """
    data = load_suite(suite)
    if isinstance(overrides, Mapping):
        overrides = dict(overrides)
    else:
        overrides = parse_assignments(overrides, "override")
    seeds = _seeds(data.get("seeds", [RESULT_KEYS["seed"]]), "'seeds'")
    for key in ("seeds", "seed"):
        if key in overrides:
            seeds = _seeds(overrides.pop(key), f"'{key}'")
    for key in overrides:
        check_key(key)
    combos = _combinations(data)
    if not combos:
        raise UserError("the suite defines no runs (give 'grid' and/or 'runs')")
    for key, _ in _estimator_option_overrides(overrides):
        _check_some_estimator_declares(key, combos, data, overrides)
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for combo in combos:
        for seed in seeds:
            config = resolve_config(combo, data, overrides, seed)
            rid = run_id(config)
            if rid not in seen:  # identical runs listed twice run once
                seen.add(rid)
                configs.append(config)
    return filter_runs(configs, only)


def _estimator_option_overrides(overrides: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in overrides.items() if k.startswith("estimator_options.")]


def _check_some_estimator_declares(key: str, combos: list[dict[str, Any]], data: Mapping[str, Any],
                                   overrides: Mapping[str, Any]) -> None:
    from lrbench.estimators import estimator_class

    option = key.split(".", 1)[1].split(".")[0]
    defaults = _mapping(data.get("defaults"), "'defaults'")
    names = {overrides.get("estimator", c.get("estimator", defaults.get("estimator", RESULT_KEYS["estimator"])))
             for c in combos}
    names = {n for n in names if isinstance(n, str)}
    if not any(option in estimator_class(n).all_options() for n in names):
        raise UserError(f"override '{key}': no estimator of this suite ({', '.join(sorted(names))}) "
                        f"has an option '{option}'")


def filter_runs(configs: list[dict[str, Any]], only: Sequence[str]) -> list[dict[str, Any]]:
    """Keep the configs matching every ``KEY=VALUE`` of ``only`` (values parsed as YAML, compared as text too)."""
    wanted = parse_assignments(only, "--only")
    for key in wanted:
        check_key(key, "--only")

    def matches(config: dict[str, Any]) -> bool:
        for key, value in wanted.items():
            actual = get_dotted(config, key)
            if actual is MISSING or (actual != value and str(actual) != str(value)):
                return False
        return True

    kept = [c for c in configs if matches(c)]
    if wanted and not kept:
        raise UserError(f"--only {' '.join(only)} matches none of the suite's {len(configs)} runs")
    return kept
