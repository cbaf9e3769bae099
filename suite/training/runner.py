"""One run end to end: ``run_one(config, out_dir)`` trains one resolved config and writes its record.

The loop over a plan's runs (skipping final records, going on after a failure) is
``suite.training.execute``; the checks made before any run are ``suite.cli.preflight``.

Crash safety: a run writes, in order, its CSV log (``DIR/logs/<run_id>/``), its final weights
(``DIR/checkpoints/<run_id>.pt``, atomic) and last its record (``DIR/runs/<run_id>.json``, atomic). A
run killed before the record exists leaves no record; the next execution deletes its partial log
and starts it again from scratch, so every run ends with exactly one record.

Determinism (CPU): ``seed_everything(seed)`` with the run's explicit seed before the model is built,
``torch.use_deterministic_algorithms(True)`` during the run, the estimator seeded with
``estimator_options.seed`` (default: the run seed), training order seeded by (seed, epoch).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import shutil
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lrbench.schema import RunConfig, empty_metrics, new_record
from lrbench.suite.errors import UserError
from lrbench.suite.training import provenance, threads, tracking
from lrbench.suite.training.budget import forward_passes_of_one_step, planned_steps
from lrbench.suite.training.claims import worker_identity
from lrbench.suite.training.gradient_sync import replicas_identical
from lrbench.suite.training.launcher_env import global_rank_from_env, local_cuda_index, num_nodes_from_env
from lrbench.suite.training.metrics.cost import machine_load
from lrbench.suite.training.parallel_modes import lightning_strategy, parallel_mode, shard_batch, split_copies
from lrbench.suite.training.rank_metrics import merge_rank_metrics
from lrbench.suite.training.results_store import (
    atomic_write_bytes,
    checkpoint_path,
    log_dir,
    resolve_checkpoint,
    write_record,
)


# --------------------------------------------------------------------------- Lightning plumbing
def build_trainer(config: dict[str, Any], *, loggers: Sequence[Any] | bool = (), callbacks: Sequence[Any] = (),
                  devices: int | None = None, strategy: str | None = None, progress: bool = True,
                  default_root_dir: Path | None = None) -> Any:
    """The one place a ``pl.Trainer`` is made (DDP and loggers extend it through the arguments)."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import TQDMProgressBar

    callbacks = list(callbacks)
    if progress:
        callbacks.append(TQDMProgressBar(process_position=1))
    return pl.Trainer(
        accelerator=config["accelerator"], devices=devices or config["devices"],
        strategy=lightning_strategy(strategy or config["strategy"]),  # ddp_copies -> ddp
        max_epochs=config["max_epochs"] if config["max_epochs"] is not None else -1,
        max_steps=config["max_steps"] if config["max_steps"] is not None else -1,
        num_nodes=num_nodes_from_env(),  # multi-node: SLURM / torchrun (docs/SCALE_OUT.md)
        logger=list(loggers) if not isinstance(loggers, bool) else loggers,
        callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=progress,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=1,
        default_root_dir=str(default_root_dir) if default_root_dir is not None else None)


@contextlib.contextmanager
def _deterministic(device_type: str) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the duration (warn-only on GPU), then restored."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if device_type != "cpu":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device_type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    import pytorch_lightning  # noqa: F401 - its import sets its loggers to INFO; lower them afterwards

    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated.*", category=FutureWarning)
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


# --------------------------------------------------------------------------- pieces of one run
def _device(config: dict[str, Any]) -> torch.device:
    return torch.device("cuda", local_cuda_index()) if config["accelerator"] == "gpu" else torch.device("cpu")


def _estimator(config: dict[str, Any]) -> Any:
    from lrbench.estimators import get_estimator

    options = dict(config["estimator_options"])
    options.setdefault("seed", config["seed"])
    return get_estimator(config["estimator"], **options)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a state dict saved by lrbench (``torch.load(weights_only=True)``) into ``model`` (strict)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not fit this model: {str(exc).splitlines()[0]}") from None


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def measure_step_cost(model: torch.nn.Module, estimator: Any, config: dict[str, Any], loss_fn: Any,
                      x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[dict[str, Any], float]:
    """Peak memory and FLOPs of one training step, measured on copies (training is not disturbed).

    A deep copy of the model, a clone of the estimator (same options and state) and a fresh optimizer of
    the run's kind take one step on the first training batch under :class:`~suite.training.metrics.memory.PeakMemory`
    and ``FlopCounterMode`` (optimizer state is created inside the step, as in a real first step).
    The global RNG is forked so the run's random stream is unchanged.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from lrbench.suite.training.lightning_module import build_optimizer
    from lrbench.suite.training.metrics.memory import PeakMemory, state_tensors

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        twin = copy.deepcopy(model)
        est = estimator.with_options()  # same options and state, validated once more
        opt = build_optimizer(config["optimizer"], [p for p in twin.parameters() if p.requires_grad],
                              config["lr"], config["weight_decay"])
        flops = FlopCounterMode(display=False)
        with PeakMemory(state_tensors(twin, opt, (x, y)), device) as memory, flops:
            est.estimate(twin, loss_fn, x, y)
            opt.step()
    del twin, opt
    return memory.result(), float(flops.get_total_flops())


def _robustness(config: dict[str, Any], model: torch.nn.Module, spec: Any, data: Any, out_dir: Path) -> Any:
    """``suite.training.robustness_eval.robustness_metrics`` on the test split, when ``config["robustness"]`` is set."""
    if config["robustness"] is None:
        return None
    from lrbench.suite.training.robustness_eval import robustness_metrics
    from lrbench.suite.training.robustness_eval.checkpoints import load_checkpoint_model

    settings = dict(config["robustness"])
    surrogate = None
    source = settings.get("transfer_source")
    if source:
        device = next(model.parameters()).device
        path = resolve_checkpoint(str(source), out_dir)
        surrogate, _ = load_checkpoint_model(path, device=device, fallback_task=config["task"])
    x_test, y_test = data.test
    model.eval()
    return robustness_metrics(model, x_test, y_test, dataset=spec.dataset, settings=settings,
                              surrogate=surrogate, seed=config["seed"])


def _new_record(config: RunConfig) -> dict[str, Any]:
    record = new_record(config, {"git_commit": provenance.git_commit(), "versions": provenance.versions(),
                                 "hardware": provenance.hardware(config.accelerator, config.devices, 1),
                                 "started_at": provenance.now()})
    record["load"] = {"start": machine_load(), "end": None}  # how busy the machine was (reports: wall time)
    record["estimator_defaults"] = _estimator_defaults(config)
    return record


@dataclass
class TrainedRun:
    """What training one config produced: the module and trainer, the task spec, the job-wide metrics."""

    module: Any
    trainer: Any
    spec: Any
    metrics: dict[str, Any]
    replicas_identical: bool


def _estimator_defaults(config: dict[str, Any]) -> dict[str, Any] | None:
    """The estimator's default options (reports label a variant by its non-default options)."""
    from lrbench.estimators import estimator_class

    try:
        defaults = estimator_class(config["estimator"]).resolve_options({})
    except Exception:  # noqa: BLE001 - labels fall back to the options that vary
        return None
    return json.loads(json.dumps({k: v for k, v in defaults.items() if k != "seed"}, default=str))


# --------------------------------------------------------------------------- one run
def run_one(config: RunConfig | Mapping[str, Any], out_dir: Path | str, progress: bool = False) -> dict[str, Any]:
    """Train one resolved config, write ``DIR/runs/<run_id>.json`` and return the record.

    A NaN/inf loss gives status ``diverged``; any other exception ``failed`` with its message (the full
    traceback goes to ``DIR/logs/<run_id>/error.txt``). KeyboardInterrupt/SystemExit write nothing.
    """
    out_dir = Path(out_dir)
    config = RunConfig.from_mapping(config)  # a record's config (no runtime keys) runs as well
    rid = config.run_id
    rank = global_rank_from_env(config.devices)
    is_zero = rank == 0  # DDP: every rank runs this; only rank 0 writes files and tracks
    if is_zero:
        shutil.rmtree(log_dir(out_dir, rid), ignore_errors=True)  # a killed earlier attempt's partial log
    record = _new_record(config)
    module = None
    tracker = tracking.start_tracking(config, out_dir, rid, rank=rank)
    try:
        with _quiet_lightning(), _deterministic(config["accelerator"] if config["accelerator"] == "cpu" else "cuda"):
            trained = _train(config, out_dir, rid, progress, loggers=tracker.loggers)
            module = trained.module
            record["hardware"]["world_size"] = int(trained.trainer.world_size)
            if trained.trainer.world_size > 1:
                record["hardware"]["replicas_identical"] = trained.replicas_identical
            record["metrics"] = trained.metrics
            if is_zero:
                _save_weights(module.model, checkpoint_path(out_dir, rid))
            record["metrics"]["robustness"] = _robustness(config, module.model, trained.spec, module.data, out_dir)
        record["status"] = "completed"
    except Exception as exc:  # noqa: BLE001 - a run's failure is recorded, the suite goes on
        from lrbench.suite.training.lightning_module import Diverged

        if module is None:
            module = getattr(exc, "lrbench_module", None)
        if module is not None:
            record["metrics"] = _partial_metrics(module)
        record["status"] = "diverged" if isinstance(exc, Diverged) else "failed"
        record["message"] = _one_line(exc)
        if record["status"] == "failed" and is_zero:
            path = log_dir(out_dir, rid) / "error.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(traceback.format_exception(exc)))
    record["hardware"]["threads"] = threads.hardware_threads()  # what the run used (suite/training/threads.py)
    record["hardware"]["worker"] = worker_identity()  # which process trained it (suite/training/claims.py)
    record["finished_at"] = provenance.now()
    record["load"]["end"] = machine_load()
    if is_zero:
        write_record(out_dir, record)
    tracker.finish(record)
    return record


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _partial_metrics(module: Any) -> dict[str, Any]:
    """Whatever a run that stopped early measured (history so far, accuracies of its last evaluation)."""
    try:
        return module.collect_metrics()
    except Exception:  # noqa: BLE001 - partial metrics are best effort
        return empty_metrics()


def _train(config: RunConfig, out_dir: Path, rid: str, progress: bool, loggers: Sequence[Any] = ()) -> TrainedRun:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from lrbench.suite.training.lightning_module import EstimatorModule, TrainBatches
    from lrbench.tasks import get_task

    seed = config["seed"]
    device = _device(config)
    pl.seed_everything(seed, workers=True, verbose=False)
    spec = get_task(config["task"])
    model = spec.build_model(**config["model_options"])
    if config["init_from"]:
        load_weights(model, resolve_checkpoint(config["init_from"], out_dir))
    model = model.to(device)
    data = spec.load_data(data_dir=config["data_dir"], device=device)
    if config["train_subset"] is not None:
        data = data.subset(train=config["train_subset"])
    estimator = _estimator(config)
    parallel = parallel_mode(config["strategy"])  # data (batch shards) | copies (ddp_copies)
    world_size = config["devices"] * num_nodes_from_env()
    if parallel == "copies":
        estimator = split_copies(estimator, world_size)  # before the cost probe: each rank runs K/R copies
    steps_per_epoch = data.num_batches("train", config["batch_size"])
    x0, y0 = next(iter(data.batches("train", config["batch_size"], seed=seed, epoch=0)))
    x0, y0 = shard_batch(x0, y0, rank=0, world_size=world_size, mode=parallel)
    memory, flops = measure_step_cost(model, estimator, config, spec.loss_fn, x0, y0, device)
    threads.apply_for_run(config.threads, flops if device.type == "cpu" else None)  # suite/training/threads.py
    total_steps = planned_steps(config, steps_per_epoch, lambda: {
        "flops": flops, "forward_passes": forward_passes_of_one_step(model, estimator, spec.loss_fn, x0, y0)})
    passes = float(estimator.forward_passes_per_step(model, config["batch_size"]))
    module = EstimatorModule(
        model, estimator, spec.loss_fn, spec.correct, data, optimizer=config["optimizer"], lr=config["lr"],
        weight_decay=config["weight_decay"], lr_schedule=config["lr_schedule"], total_steps=total_steps,
        grad_quality_every=config["grad_quality_every"], target=getattr(spec, "target", None), parallel=parallel,
        step_cost={"memory": memory, "flops": flops, "forward_passes": passes}, budget=config["budget"])
    logger = CSVLogger(save_dir=str(out_dir / "logs"), name=rid, version="")
    trainer = build_trainer(config, loggers=[logger, *loggers], callbacks=[module.budget] if module.budget else [],
                            progress=progress, default_root_dir=out_dir)
    batches = TrainBatches(data, config["batch_size"], seed, lambda: trainer.current_epoch)
    try:
        trainer.fit(module, train_dataloaders=batches)
    except Exception as exc:
        exc.lrbench_module = module  # type: ignore[attr-defined]
        raise
    module.evaluate(log=False)  # a run stopped by max_steps mid-epoch still gets its final evaluation
    return TrainedRun(module=module, trainer=trainer, spec=spec,
                      metrics=merge_rank_metrics(module.collect_metrics(), parallel),  # DDP: job-wide numbers
                      replicas_identical=replicas_identical(module.model))
