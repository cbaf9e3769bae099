"""The checks a plan makes once, before anything runs or is written (each failure one UserError line).

In order, cheapest first: every run's wandb settings and multi-device setup (strategy, devices, copies
divisible by the ranks), then the checkpoints runs start from or attack with (``init_from``,
``robustness.transfer_source``), then every task's data of the runs still to do (loaded once per task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrbench.schema import RunConfig
from lrbench.suite.errors import UserError
from lrbench.suite.training.launcher_env import num_nodes_from_env
from lrbench.suite.training.parallel_modes import (
    COPY_PARALLEL,
    SUPPORTED_STRATEGIES,
    copies_per_rank,
    copy_option,
)
from lrbench.suite.training.results_store import is_done, resolve_checkpoint
from lrbench.suite.training.tracking import resolve_wandb


def preflight(configs: Sequence[RunConfig], out_dir: Path, *, settings_only: bool = False) -> None:
    """Every check of this module on the runs of one plan; raises the first problem found.
    ``settings_only``: the per-run settings (wandb, devices), not checkpoints and data (``--list``)."""
    for config in configs:
        resolve_wandb(config["wandb"])
        check_parallel(config)
    if settings_only:
        return
    check_init_sources(configs, out_dir)
    check_data([c for c in configs if not is_done(out_dir, c.run_id)])


def _lightning_strategies() -> set[str]:
    from pytorch_lightning.strategies import StrategyRegistry

    return set(StrategyRegistry.available_strategies())


def check_parallel(config: Mapping[str, Any]) -> None:
    """One-line UserError for a strategy Lightning does not know, or a multi-device setup lrbench cannot
    train correctly.

    Supported with ``devices > 1``: Lightning's script-launched DDP (``ddp``, or ``auto``, which picks it)
    and ``ddp_copies`` for estimators with ``copies``/``directions`` divisible by the number of ranks.
    Spawn/fork variants train in child processes whose module never returns its metrics to the process
    that writes the record; FSDP/DeepSpeed shard the parameters, which the .grad all-reduce does not know.
    """
    strategy, devices = str(config["strategy"]).lower(), int(config["devices"])
    known = (*SUPPORTED_STRATEGIES, COPY_PARALLEL)
    if strategy not in known and strategy not in _lightning_strategies():
        raise UserError(f"unknown strategy '{config['strategy']}'; use one of {', '.join(known)} "
                        "(docs/SCALE_OUT.md)")
    if strategy == COPY_PARALLEL:
        from lrbench.estimators import estimator_class

        world_size = devices * num_nodes_from_env()
        key = copy_option(estimator_class(config["estimator"]))
        if key is None:
            raise UserError(f"strategy '{COPY_PARALLEL}' splits an estimator's copies over ranks, but "
                            f"'{config['estimator']}' declares no copies option; use strategy ddp")
        value = config["estimator_options"].get(key)
        values = value if isinstance(value, list) else [value]
        if value is None or any(int(v) % world_size for v in values):
            raise UserError(f"strategy '{COPY_PARALLEL}': estimator_options.{key}={value} must be divisible "
                            f"by the {world_size} ranks")
        per_rank = copies_per_rank(value, world_size)
        try:  # the per-rank options must be valid too (e.g. antithetic pairs)
            estimator_class(config["estimator"])(**{**config["estimator_options"], key: per_rank})
        except ValueError as exc:
            raise UserError(f"strategy '{COPY_PARALLEL}' with {world_size} ranks: {exc}") from None
        return
    if devices > 1 and strategy not in SUPPORTED_STRATEGIES:
        raise UserError(f"strategy '{config['strategy']}' is not supported with devices={devices}; use one of "
                        f"{', '.join(known)} (docs/SCALE_OUT.md)")


def check_init_sources(configs: Sequence[Mapping[str, Any]], out_dir: Path) -> None:
    """Every ``init_from`` and ``robustness.transfer_source`` is a checkpoint file, a run id with a
    checkpoint under ``out_dir``, or the run id of an earlier run of the plan."""
    earlier: set[str] = set()
    for config in configs:
        sources = [config.get("init_from"), (config.get("robustness") or {}).get("transfer_source")]
        for source in sources:
            if source and source not in earlier:
                resolve_checkpoint(str(source), out_dir)
        earlier.add(RunConfig.from_mapping(config).run_id)


def check_data(configs: Sequence[Mapping[str, Any]]) -> None:
    """Load each task's data once before any run: missing or corrupt data is a one-line TaskError now,
    not a failed record later."""
    from lrbench.tasks import get_task

    seen: set[tuple[str, Any]] = set()
    for config in configs:
        key = (config["task"], config.get("data_dir"))
        if key not in seen:
            seen.add(key)
            get_task(config["task"]).load_data(data_dir=config.get("data_dir"), device="cpu")
