"""Run resolved configs and store one record per run (``lrbench run``).

``run_suite(configs, out_dir)`` runs every config whose record is not already final (completed or
diverged; a ``failed`` run is retried), one after the other; a run that raises is recorded as
``failed`` and the suite goes on. ``run_one(config, out_dir)`` trains one config and returns its record.

Crash safety: a run writes, in order, its CSV log (``DIR/logs/<run_id>/``), its final weights
(``DIR/checkpoints/<run_id>.pt``, atomic) and last its record (``DIR/runs/<run_id>.json``, atomic). A
run killed before the record exists leaves no record; the next ``run_suite`` deletes its partial log
and starts it again from scratch, so every run ends with exactly one record.

Determinism (CPU): ``seed_everything(seed)`` with the run's explicit seed before the model is built,
``torch.use_deterministic_algorithms(True)`` during the run, the estimator seeded with
``estimator_options.seed`` (default: the run seed), training order seeded by (seed, epoch).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import logging
import os
import shutil
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import distributed, provenance, threads, tracking
from .claims import worker_identity
from .errors import UserError
from .results import (
    SCHEMA_VERSION,
    atomic_write_bytes,
    checkpoint_path,
    is_done,
    log_dir,
    read_record,
    run_id,
    write_record,
)

METRIC_KEYS = ("val_accuracy_final", "val_accuracy_best", "test_accuracy_final", "test_accuracy_best",
               "train_loss_final", "time_to_target", "history", "peak_memory_bytes", "throughput",
               "gradient_quality", "robustness")


@dataclass
class SuiteResult:
    """What ``run_suite`` did: records of the runs it ran, ids it skipped (final before it started), ids
    other workers finished meanwhile, and failures."""

    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # finished meanwhile by other workers on the folder

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


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
        strategy=distributed.lightning_strategy(strategy or config["strategy"]),  # ddp_copies -> ddp
        max_epochs=config["max_epochs"] if config["max_epochs"] is not None else -1,
        max_steps=config["max_steps"] if config["max_steps"] is not None else -1,
        num_nodes=distributed.num_nodes_from_env(),  # multi-node: SLURM / torchrun (docs/SCALE_OUT.md)
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
    return torch.device("cuda", distributed.local_cuda_index()) if config["accelerator"] == "gpu" else torch.device("cpu")


def _estimator(config: dict[str, Any]) -> Any:
    from lrbench.estimators import get_estimator

    options = dict(config["estimator_options"])
    options.setdefault("seed", config["seed"])
    return get_estimator(config["estimator"], **options)


def resolve_checkpoint(value: str, out_dir: Path) -> Path:
    """``init_from`` / transfer source: a checkpoint path, or a run id of ``out_dir`` with a checkpoint."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    candidate = checkpoint_path(out_dir, value)
    if candidate.is_file():
        return candidate
    raise UserError(f"checkpoint '{value}' not found (neither a file nor a run id with "
                    f"{candidate.relative_to(out_dir)} under {out_dir})")


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
    the run's kind take one step on the first training batch under :class:`~suite.metrics.memory.PeakMemory`
    and ``FlopCounterMode`` (optimizer state is created inside the step, as in a real first step).
    The global RNG is forked so the run's random stream is unchanged.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from lrbench.estimators import get_estimator

    from .lightning_module import build_optimizer
    from .metrics.memory import PeakMemory, state_tensors

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        twin = copy.deepcopy(model)
        est = get_estimator(estimator.name, **estimator.opts)
        est.load_state_dict(estimator.state_dict())
        opt = build_optimizer(config["optimizer"], [p for p in twin.parameters() if p.requires_grad],
                              config["lr"], config["weight_decay"])
        flops = FlopCounterMode(display=False)
        with PeakMemory(state_tensors(twin, opt, (x, y)), device) as memory, flops:
            est.estimate(twin, loss_fn, x, y)
            opt.step()
    del twin, opt
    return memory.result(), float(flops.get_total_flops())


def _robustness(config: dict[str, Any], model: torch.nn.Module, spec: Any, data: Any, out_dir: Path) -> Any:
    """``suite.robustness.robustness_metrics`` on the test split, when ``config["robustness"]`` is set."""
    if config["robustness"] is None:
        return None
    if importlib.util.find_spec("lrbench.suite.robustness") is None:
        raise UserError("robustness evaluation is not available in this version (suite.robustness missing)")
    robustness = importlib.import_module("lrbench.suite.robustness")
    settings = dict(config["robustness"])
    surrogate = None
    source = settings.get("transfer_source")
    if source:
        device = next(model.parameters()).device
        path = resolve_checkpoint(str(source), out_dir)
        loader = importlib.import_module("lrbench.suite.robustness.checkpoints")
        surrogate, _ = loader.load_checkpoint_model(path, device=device, fallback_task=config["task"])
    x_test, y_test = data.test
    model.eval()
    return robustness.robustness_metrics(model, x_test, y_test, dataset=spec.dataset, settings=settings,
                                         surrogate=surrogate, seed=config["seed"])


def _empty_metrics() -> dict[str, Any]:
    return {key: None for key in METRIC_KEYS} | {"history": []}


def _base_record(config: dict[str, Any], rid: str) -> dict[str, Any]:
    from .config import CONFIG_KEYS

    stored = {key: config[key] for key in CONFIG_KEYS}  # runtime keys (out, data_dir, ...) are not results
    return {"schema_version": SCHEMA_VERSION, "run_id": rid, "config": stored, "seed": config["seed"],
            "git_commit": provenance.git_commit(), "versions": provenance.versions(),
            "hardware": provenance.hardware(config["accelerator"], config["devices"], 1),
            "started_at": provenance.now(), "finished_at": None, "status": None, "message": None,
            "metrics": _empty_metrics()}


# --------------------------------------------------------------------------- one run
def run_one(config: dict[str, Any], out_dir: Path | str, progress: bool = False) -> dict[str, Any]:
    """Train one resolved config, write ``DIR/runs/<run_id>.json`` and return the record.

    A NaN/inf loss gives status ``diverged``; any other exception ``failed`` with its message (the full
    traceback goes to ``DIR/logs/<run_id>/error.txt``). KeyboardInterrupt/SystemExit write nothing.
    """
    from .config import RUNTIME_KEYS

    out_dir = Path(out_dir)
    config = {**RUNTIME_KEYS, **config}  # a record's config (no runtime keys) runs as well
    rid = run_id(config)
    rank = distributed.global_rank_from_env(config["devices"])
    is_zero = rank == 0  # DDP: every rank runs this; only rank 0 writes files and tracks
    if is_zero:
        shutil.rmtree(log_dir(out_dir, rid), ignore_errors=True)  # a killed earlier attempt's partial log
    record = _base_record(config, rid)
    module = None
    tracker = tracking.start_tracking(config, out_dir, rid, rank=rank)
    try:
        with _quiet_lightning(), _deterministic(config["accelerator"] if config["accelerator"] == "cpu" else "cuda"):
            module, trainer = _train(config, out_dir, rid, progress, loggers=tracker.loggers)
            record["hardware"]["world_size"] = int(trainer.world_size)
            if trainer.world_size > 1:
                record["hardware"]["replicas_identical"] = module.replicas_identical
            record["metrics"] = module.run_metrics
            if is_zero:
                _save_weights(module.model, checkpoint_path(out_dir, rid))
            record["metrics"]["robustness"] = _robustness(config, module.model, module.spec, module.data, out_dir)
        record["status"] = "completed"
    except Exception as exc:  # noqa: BLE001 - a run's failure is recorded, the suite goes on
        from .lightning_module import Diverged

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
    record["hardware"]["threads"] = threads.hardware_threads()  # what the run used (suite/threads.py)
    record["hardware"]["worker"] = worker_identity()  # which process ran it (suite/claims.py)
    record["finished_at"] = provenance.now()
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
        return _empty_metrics()


def _train(config: dict[str, Any], out_dir: Path, rid: str, progress: bool,
           loggers: Sequence[Any] = ()) -> tuple[Any, Any]:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from lrbench.tasks import get_task

    from .lightning_module import EstimatorModule, TrainBatches

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
    parallel = distributed.parallel_mode(config["strategy"])  # data (batch shards) | copies (ddp_copies)
    world_size = config["devices"] * distributed.num_nodes_from_env()
    if parallel == "copies":
        estimator = distributed.split_copies(estimator, world_size)  # before the cost probe: each rank runs K/R copies
    steps_per_epoch = data.num_batches("train", config["batch_size"])
    total_steps = min(s for s in (config["max_steps"],
                                  config["max_epochs"] * steps_per_epoch if config["max_epochs"] else None) if s)
    module = EstimatorModule(
        model, estimator, spec.loss_fn, spec.correct, data, optimizer=config["optimizer"], lr=config["lr"],
        weight_decay=config["weight_decay"], lr_schedule=config["lr_schedule"], total_steps=total_steps,
        grad_quality_every=config["grad_quality_every"], target=getattr(spec, "target", None))
    module.spec = spec
    module.parallel = parallel
    x0, y0 = next(iter(data.batches("train", config["batch_size"], seed=seed, epoch=0)))
    x0, y0 = distributed.shard_batch(x0, y0, rank=0, world_size=world_size, mode=parallel)
    memory, flops = measure_step_cost(model, estimator, config, spec.loss_fn, x0, y0, device)
    threads.apply_for_run(config["threads"], flops if device.type == "cpu" else None)  # suite/threads.py
    passes = float(estimator.forward_passes_per_step(model, config["batch_size"]))
    module.step_cost = {"memory": memory, "flops": flops, "forward_passes": passes}
    logger = CSVLogger(save_dir=str(out_dir / "logs"), name=rid, version="")
    trainer = build_trainer(config, loggers=[logger, *loggers], progress=progress, default_root_dir=out_dir)
    batches = TrainBatches(data, config["batch_size"], seed, lambda: trainer.current_epoch)
    try:
        trainer.fit(module, train_dataloaders=batches)
    except Exception as exc:
        exc.lrbench_module = module  # type: ignore[attr-defined]
        raise
    module.evaluate(log=False)  # a run stopped by max_steps mid-epoch still gets its final evaluation
    module.run_metrics = distributed.merge_rank_metrics(module.collect_metrics(), parallel)  # DDP: job-wide numbers
    module.replicas_identical = distributed.replicas_identical(module.model)
    return module, trainer


# --------------------------------------------------------------------------- a suite
def run_suite(configs: list[dict[str, Any]], out_dir: Path | str, progress: bool = True, jobs: int = 1,
              stale_after: float | None = None) -> SuiteResult:
    """Run every config not already final under ``out_dir``; returns what happened (never raises per run).

    Runs are claimed before they start (``suite.claims``), so other ``lrbench run`` processes on the same
    folder split the suite with this one; ``jobs > 1`` runs that many local worker processes
    (``suite.pool``). DDP suites (``devices > 1``) run in this process, one run after the other."""
    from .suite_progress import SuiteProgress
    from .worker import WorkerSettings, work_through

    out_dir = Path(out_dir)
    _check_init_sources(configs, out_dir)
    _check_data([c for c in configs if not is_done(out_dir, run_id(c))])
    result = SuiteResult(out_dir=out_dir)
    ids = [run_id(c) for c in configs]
    result.skipped = [rid for rid in ids if is_done(out_dir, rid)]
    if any(int(c["devices"]) > 1 for c in configs):
        return _run_ddp_suite(configs, out_dir, progress, result)
    bar = SuiteProgress(ids, result.skipped, enabled=progress)
    settings = WorkerSettings(out_dir=str(out_dir), jobs=jobs, progress=progress and jobs == 1)
    if stale_after is not None:
        settings = replace(settings, stale_after=stale_after, heartbeat_every=min(settings.heartbeat_every,
                                                                                  stale_after / 4))

    maybe_elsewhere: set[str] = set()

    def on_event(kind: str, rid: str, record: dict[str, Any] | None) -> None:
        if kind == "ran" and record is not None:
            result.records.append(record)
            bar.finished(kind, rid, record)
        elif jobs == 1:  # the only worker here: a final run it did not train was trained elsewhere
            result.elsewhere.append(rid)
            bar.finished(kind, rid, record)
        else:  # may be a sibling worker's run whose "ran" event is still on its way
            maybe_elsewhere.add(rid)

    if jobs > 1:
        from .pool import run_pool

        gpu = configs[0]["accelerator"] == "gpu" if configs else False
        run_pool(configs, settings, on_event, cuda_devices=threads.cuda_device_count() if gpu else 0)
        ran = {r["run_id"] for r in result.records}
        for rid in ids:
            if rid in maybe_elsewhere and rid not in ran and rid not in result.skipped:
                result.elsewhere.append(rid)
                bar.finished("final", rid, read_record(out_dir, rid))
    else:
        threads.set_interop_threads(threads.process_budget())  # effective only before torch's first parallel op
        work_through(configs, settings, on_event=on_event)
    bar.close()
    result.records.sort(key=lambda r: ids.index(r["run_id"]))
    return result


def _run_ddp_suite(configs: list[dict[str, Any]], out_dir: Path, progress: bool,
                   result: SuiteResult) -> SuiteResult:
    """Every rank walks the same list (Lightning re-runs the command for the other ranks), so runs are not
    claimed here: a DDP suite is one job per results folder (docs/SCALE_OUT.md)."""
    from tqdm.auto import tqdm

    ids = [run_id(c) for c in configs]
    progress = progress and distributed.global_rank_from_env(configs[0]["devices"]) == 0
    bar = tqdm(total=len(configs), desc="suite", unit="run", position=0, disable=not progress, leave=True)
    for i, (config, rid) in enumerate(zip(configs, ids, strict=True), start=1):
        bar.set_description(f"run {i}/{len(configs)} {rid}")
        if rid in result.skipped:
            bar.update(1)
            continue
        record = run_one(config, out_dir, progress=progress)
        result.records.append(record)
        if progress:
            bar.write(finished_line(i, len(configs), record))
        bar.update(1)
    bar.close()
    return result


def finished_line(i: int, total: int, record: dict[str, Any]) -> str:
    """``[i/total] run_id: status (test accuracy 0.953) — message``: one line per finished run."""
    acc = record["metrics"].get("test_accuracy_final")
    shown = f"{acc:.3f}" if isinstance(acc, float) else "-"
    return (f"[{i}/{total}] {record['run_id']}: {record['status']} (test accuracy {shown})"
            + (f" — {record['message']}" if record["message"] else ""))


def _check_data(configs: list[dict[str, Any]]) -> None:
    """Load each task's data once before any run: missing or corrupt data is a one-line TaskError now,
    not a failed record later."""
    from lrbench.tasks import get_task

    seen: set[tuple[str, Any]] = set()
    for config in configs:
        key = (config["task"], config.get("data_dir"))
        if key not in seen:
            seen.add(key)
            get_task(config["task"]).load_data(data_dir=config.get("data_dir"), device="cpu")


def _check_init_sources(configs: list[dict[str, Any]], out_dir: Path) -> None:
    """Every ``init_from`` and ``robustness.transfer_source`` is a checkpoint file, a run id with a
    checkpoint under ``out_dir``, or the run id of an earlier run of the suite."""
    earlier: set[str] = set()
    for config in configs:
        sources = [config.get("init_from"), (config.get("robustness") or {}).get("transfer_source")]
        for source in sources:
            if source and source not in earlier:
                resolve_checkpoint(str(source), out_dir)
        earlier.add(run_id(config))
