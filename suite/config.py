"""Run configurations: the resolved config of one run, and suites (YAML grids/lists of runs).

A *resolved config* has exactly the keys of ``CONFIG_KEYS`` (docs/RESULTS.md). Each value comes from,
lowest precedence first:

1. ``CONFIG_KEYS`` defaults, then the task spec (``batch_size``, ``lr``, ``optimizer``, ``max_epochs``,
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
import functools
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

SUITES_DIR = Path(__file__).resolve().parent / "suites"

CONFIG_KEYS: dict[str, Any] = {
    "task": None,
    "estimator": "bp",
    "estimator_options": {},
    "model_options": {},
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "none",
    "batch_size": 64,
    "max_epochs": 3,
    "max_steps": None,
    "train_subset": None,
    "seed": 0,
    "accelerator": "auto",
    "devices": 1,
    "strategy": "auto",
    "grad_quality_every": 50,
    "robustness": None,
    "init_from": None,
}
# Keys that never change a run's results: accepted, stored in the config, left out of the run id.
RUNTIME_KEYS: dict[str, Any] = {"out": None, "data_dir": None, "progress": True, "wandb": None,
                                "threads": "auto"}  # torch threads per run (suite/threads.py)
ALL_KEYS = {**CONFIG_KEYS, **RUNTIME_KEYS}
MAPPING_KEYS = ("estimator_options", "model_options", "robustness")
# Taken from the task spec (``max_epochs``/``max_steps`` from ``spec.budget``, ``weight_decay`` from
# ``spec.optimizer_options`` when given there).
SPEC_DEFAULT_KEYS = ("batch_size", "lr", "optimizer", "max_epochs", "weight_decay", "lr_schedule")
SUITE_KEYS = ("name", "description", "defaults", "grid", "runs", "estimators", "tasks", "rules", "exclude", "seeds")

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("none", "cosine", "step")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


# --------------------------------------------------------------------------- small helpers
def parse_assignments(pairs: Iterable[str], what: str) -> dict[str, Any]:
    """``["max_epochs=1", "seeds=[0,1]"]`` -> ``{"max_epochs": 1, "seeds": [0, 1]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{what} '{pair}' must look like KEY=VALUE")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise UserError(f"{what} '{pair}': the value is not valid YAML") from None
    return out


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(c, "estimator_options.copies", 32)``; mapping values merge into mapping keys."""
    head, _, rest = key.partition(".")
    if rest:
        if head not in MAPPING_KEYS:
            raise UserError(f"'{key}': only {', '.join(MAPPING_KEYS)} take dotted sub-keys")
        sub = config.get(head)
        sub = dict(sub) if isinstance(sub, Mapping) else {}
        sub[rest] = copy.deepcopy(value)
        config[head] = sub
    elif head in MAPPING_KEYS and isinstance(value, Mapping) and isinstance(config.get(head), Mapping):
        config[head] = {**config[head], **value}
    else:
        config[head] = copy.deepcopy(value)


def get_dotted(config: Mapping[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


def merge(base: dict[str, Any], layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Apply one layer of (possibly dotted) keys onto ``base``; unknown top-level keys are errors."""
    out = dict(base)
    for key, value in layer.items():
        top = str(key).split(".")[0]
        if top not in ALL_KEYS:
            raise UserError(f"unknown config key '{key}' in {where}; valid keys: {', '.join(sorted(ALL_KEYS))}")
        set_dotted(out, str(key), value)
    return out


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserError(f"{where} must be a mapping of key: value, got {type(value).__name__}")
    return dict(value)


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


def _check_values(config: dict[str, Any]) -> None:
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
    if config["max_epochs"] is None and config["max_steps"] is None:
        raise UserError("one of 'max_epochs' and 'max_steps' must be set")
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
    from .threads import check_threads

    config["threads"] = check_threads(config["threads"])
    if not isinstance(config["progress"], bool):
        raise UserError(f"'progress' must be true or false, got {config['progress']!r}")


def _check_against_task_and_estimator(config: dict[str, Any]) -> None:
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
    config["estimator_options"] = resolved
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
    """``suite.robustness`` must be installed; its own settings check runs now (before any training)."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("lrbench.suite.robustness") is None:
        raise UserError("robustness evaluation is not available in this version (suite.robustness missing)")
    evaluate = importlib.import_module("lrbench.suite.robustness.evaluate")
    check = getattr(evaluate, "resolve_settings", None)
    if check is not None:
        check(spec.dataset, dict(config["robustness"]), config["seed"])


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
    task, estimator = partial.get("task"), partial.get("estimator", CONFIG_KEYS["estimator"])
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
    _check_values(config)
    _check_against_task_and_estimator(config)
    return config


def _rule_matches(config: Mapping[str, Any], match: Mapping[str, Any], where: str) -> bool:
    for key, wanted in match.items():
        if str(key).split(".")[0] not in ALL_KEYS:
            raise UserError(f"unknown config key '{key}' in {where}; valid keys: {', '.join(sorted(ALL_KEYS))}")
        actual = get_dotted(config, str(key))
        if actual not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file; a syntax error becomes one UserError line: ``{what} at line L, column C: problem``."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{what}{where}: {getattr(exc, 'problem', None) or exc}") from None


def check_extra_tokens(extra: list[str], command: str) -> list[str]:
    """Tokens argparse left over must be ``key=value`` overrides; anything else is one UserError line."""
    bad = [t for t in extra if t.startswith("-") or "=" not in t]
    if bad:
        raise UserError(f"unrecognized argument '{bad[0]}' (overrides look like key=value; "
                        f"see 'lrbench {command} --help')")
    return list(extra)


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
    seeds = _seeds(data.get("seeds", [CONFIG_KEYS["seed"]]), "'seeds'")
    for key in ("seeds", "seed"):
        if key in overrides:
            seeds = _seeds(overrides.pop(key), f"'{key}'")
    for key in overrides:
        if key.split(".")[0] not in ALL_KEYS:
            raise UserError(f"unknown config key '{key}'; valid keys: {', '.join(sorted(ALL_KEYS))}")
    combos = _combinations(data)
    if not combos:
        raise UserError("the suite defines no runs (give 'grid' and/or 'runs')")
    for key, _ in _estimator_option_overrides(overrides):
        _check_some_estimator_declares(key, combos, data, overrides)
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    from .results import run_id

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
    names = {overrides.get("estimator", c.get("estimator", defaults.get("estimator", CONFIG_KEYS["estimator"])))
             for c in combos}
    names = {n for n in names if isinstance(n, str)}
    if not any(option in estimator_class(n).all_options() for n in names):
        raise UserError(f"override '{key}': no estimator of this suite ({', '.join(sorted(names))}) "
                        f"has an option '{option}'")


def filter_runs(configs: list[dict[str, Any]], only: Sequence[str]) -> list[dict[str, Any]]:
    """Keep the configs matching every ``KEY=VALUE`` of ``only`` (values parsed as YAML, compared as text too)."""
    wanted = parse_assignments(only, "--only")
    for key in wanted:
        if key.split(".")[0] not in ALL_KEYS:
            raise UserError(f"--only: unknown config key '{key}'; valid keys: {', '.join(sorted(ALL_KEYS))}")

    def matches(config: dict[str, Any]) -> bool:
        for key, value in wanted.items():
            actual = get_dotted(config, key)
            if actual is _MISSING or (actual != value and str(actual) != str(value)):
                return False
        return True

    kept = [c for c in configs if matches(c)]
    if wanted and not kept:
        raise UserError(f"--only {' '.join(only)} matches none of the suite's {len(configs)} runs")
    return kept
