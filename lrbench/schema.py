"""The run config and the run record: the one definition every layer reads (torch-free, stdlib only).

A run's config has exactly the fields of :class:`RunConfig`. *Result* fields change what a run computes
and are stored in its record; *runtime* fields (where the data lives, progress bars, wandb) only change
how it runs: they are accepted in suites and on the command line, never stored, never part of the run id.
Adding a config key is one line here (a field with its default and its kind; a new result key is marked
``added=True`` so that runs at its default keep their run id); the suite's parser, the
runner, the results store, wandb tracking and ``lrbench.reports`` all take their key lists from here,
and a test checks docs/RESULTS.md against them.

Run id (docs/RESULTS.md)::

    run_id = f"{task}__{estimator}__{hash10}__s{seed}"
    hash10 = sha256(canonical_json(result config − {seed}))[:10]
    canonical_json = json.dumps(sort_keys=True, separators=(",", ":"))

The results folder is not a config key: it is given to the command (``--out DIR``), so a YAML ``out:``
is refused with a pointer to ``--out``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

RESULT = "result"
RUNTIME = "runtime"


def _key(default: Any, kind: str = RESULT, *, added: bool = False) -> Any:
    """A config field: its default (mappings get a fresh empty dict per config) and its kind.

    ``added=True`` marks a result key introduced after results existed: while it holds its default it
    is left out of the run id's hash, so the run ids of older results folders stay valid.
    """
    metadata = {"kind": kind, "added": added}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig(Mapping[str, Any]):
    """One resolved run (read-only; also a ``Mapping``, so ``config["lr"]`` and ``config.lr`` both work)."""

    task: str | None = _key(None)
    estimator: str = _key("bp")
    estimator_options: dict[str, Any] = _key({})
    model_options: dict[str, Any] = _key({})
    optimizer: str = _key("adam")
    lr: float = _key(1e-3)
    weight_decay: float = _key(0.0)
    lr_schedule: str = _key("none")
    batch_size: int = _key(64)
    max_epochs: int | None = _key(3)
    max_steps: int | None = _key(None)
    train_subset: int | None = _key(None)
    seed: int = _key(0)
    accelerator: str = _key("auto")
    devices: int = _key(1)
    strategy: str = _key("auto")
    grad_quality_every: int | None = _key(50)
    robustness: dict[str, Any] | None = _key(None)
    init_from: str | None = _key(None)
    # a compute bound besides epochs/steps: {unit, amount} or {unit, same_as} (suite/cli/budgets.py)
    budget: dict[str, Any] | None = _key(None, added=True)
    # runtime: never stored, never in the run id
    data_dir: str | None = _key(None, RUNTIME)
    progress: bool = _key(True, RUNTIME)
    wandb: Any = _key(None, RUNTIME)
    threads: Any = _key("auto", RUNTIME)  # torch threads per run: "auto" or N (suite/training/threads.py)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> RunConfig:
        """A config from a resolved dict or a record's stored config (missing runtime keys get defaults)."""
        if isinstance(config, RunConfig):
            return config
        unknown = sorted(set(config) - set(ALL_KEYS))
        if unknown:
            raise KeyError(f"unknown config key '{unknown[0]}'; valid keys: {', '.join(sorted(ALL_KEYS))}")
        return cls(**dict(config))

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ALL_KEYS}

    def result_config(self) -> dict[str, Any]:
        """What a record stores as ``config``: the result fields."""
        return {name: getattr(self, name) for name in RESULT_KEYS}

    @property
    def run_id(self) -> str:
        return run_id(self)

    # Mapping protocol (read-only)
    def __getitem__(self, key: str) -> Any:
        if key not in ALL_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(ALL_KEYS)

    def __len__(self) -> int:
        return len(ALL_KEYS)

    def __hash__(self) -> int:  # dict fields make the generated hash fail; the run id identifies a config
        return hash(self.run_id)


_FIELDS = dataclasses.fields(RunConfig)
_DEFAULTS = RunConfig()
RESULT_KEYS: dict[str, Any] = {f.name: getattr(_DEFAULTS, f.name) for f in _FIELDS if f.metadata["kind"] == RESULT}
RUNTIME_KEYS: dict[str, Any] = {f.name: getattr(_DEFAULTS, f.name) for f in _FIELDS if f.metadata["kind"] == RUNTIME}
ALL_KEYS: dict[str, Any] = {**RESULT_KEYS, **RUNTIME_KEYS}
# Left out of the hash of the run id (the seed is in the id itself, as ``__s<seed>``) and of a report's variant.
NON_RESULT_KEYS: tuple[str, ...] = ("seed", *RUNTIME_KEYS)
# Result keys added after results existed (``_key(..., added=True)``): hashed only when not at their default.
ADDED_KEYS: dict[str, Any] = {f.name: RESULT_KEYS[f.name] for f in _FIELDS if f.metadata["added"]}
# Config values that are mappings: they merge key by key and take dotted sub-keys.
MAPPING_KEYS = ("estimator_options", "model_options", "robustness", "budget")


def config_hash(config: Mapping[str, Any]) -> str:
    """First 10 hex digits of the SHA-256 of the canonical JSON of the config without non-result keys
    (and without added keys at their default)."""
    relevant = {k: v for k, v in config.items()
                if k not in NON_RESULT_KEYS and not (k in ADDED_KEYS and v == ADDED_KEYS[k])}
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_id(config: Mapping[str, Any]) -> str:
    return f"{config['task']}__{config['estimator']}__{config_hash(config)}__s{config['seed']}"


# --------------------------------------------------------------------------- the run record
SCHEMA_VERSION = 1
FINAL_STATUSES = ("completed", "diverged", "failed")
# Statuses a re-run of the suite keeps (skips); a 'failed' run is retried.
SKIPPED_STATUSES = ("completed", "diverged")
# Top-level keys of a record, in the order they are written.
RECORD_KEYS = ("schema_version", "run_id", "config", "seed", "git_commit", "versions", "hardware",
               "started_at", "finished_at", "status", "message", "load", "estimator_defaults", "metrics")
# Units of ``metrics.cost`` and of a ``budget`` (docs/RESULTS.md "Cost and budgets"); the first two are known
# before training (per-step counts), so an equal-compute budget (``budget.same_as``) can be priced in them.
COST_UNITS = ("forward_passes", "flops", "cpu_seconds", "wall_seconds")
UNITS_KNOWN_BEFORE_TRAINING = ("forward_passes", "flops")
# Keys of ``record["metrics"]``.
METRIC_KEYS = ("val_accuracy_final", "val_accuracy_best", "test_accuracy_final", "test_accuracy_best",
               "train_loss_final", "time_to_target", "history", "peak_memory_bytes", "throughput",
               "gradient_quality", "robustness", "cost", "budget")


def empty_metrics() -> dict[str, Any]:
    """``record["metrics"]`` before anything was measured: every key None, ``history`` empty."""
    return {key: None for key in METRIC_KEYS} | {"history": []}


def new_record(config: RunConfig, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """A record of ``config`` not run yet; ``provenance`` gives git_commit, versions, hardware, started_at."""
    record = {key: None for key in RECORD_KEYS}
    record.update(schema_version=SCHEMA_VERSION, run_id=config.run_id, config=config.result_config(),
                  seed=config.seed, metrics=empty_metrics())
    record.update({k: provenance[k] for k in ("git_commit", "versions", "hardware", "started_at")})
    return record
