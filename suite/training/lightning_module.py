"""The LightningModule that trains a task model with any gradient estimator (manual optimisation).

One training step::

    loss, logs = estimator.estimate(model, loss_fn, x, y)   # writes p.grad          (timed)
    [gradient quality vs BP on the same batch and parameters, when scheduled]        (untimed)
    optimizer.step(); scheduler.step()                                               (timed)

Under DDP every rank holds the global batch, estimates on its shard, and ``sync_after_estimate``
averages ``.grad`` (and the loss) over ranks before the optimizer step (suite/training/gradient_sync.py). A
non-finite loss raises :class:`Diverged`. At the end of every epoch the model is evaluated
(``eval()`` mode, no grad, untimed) on the validation and test splits; the epoch's row of ``history`` is
``{epoch, step, train_loss, val_accuracy, test_accuracy, wall_time}`` with ``train_loss`` the mean of the
epoch's batch losses and ``wall_time`` the training clock (:mod:`suite.training.metrics.throughput`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lrbench.estimators import Estimator
from lrbench.suite.training.metrics.gradient_quality import GradientQuality
from lrbench.suite.training.metrics.throughput import StepClock
from lrbench.suite.training.metrics.time_to_target import TimeToTarget

from .gradient_sync import sync_after_estimate
from .parallel_modes import shard_batch
from .rank_seeds import apply_rank_seed

EVAL_BATCH_SIZE = 1024



ESTIMATOR_LOG_EVERY = 25  # steps between logs of the estimator's own counters (est_* columns)

class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def build_optimizer(name: str, params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``sgd`` = SGD with momentum 0.9; ``adam`` = Adam; ``adamw`` = AdamW (decoupled weight decay)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'; valid optimizers: sgd, adam, adamw")


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """Per-step schedules over ``total_steps`` optimizer steps T.

    ``none``: constant; ``cosine``: lr_t = lr·(1 + cos(π t / T)) / 2; ``step``: lr × 0.1 after 50 % and
    again after 75 % of T.
    """
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if name == "step":
        milestones = sorted({max(1, total_steps // 2), max(1, (3 * total_steps) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    raise ValueError(f"unknown lr schedule '{name}'; valid schedules: none, cosine, step")


class TrainBatches:
    """Re-iterable training batches: epoch ``e`` yields ``data.batches("train", B, seed=seed, epoch=e)``.

    The epoch comes from ``epoch_fn`` (the trainer's current epoch), so an epoch's order and augmentation
    depend only on (seed, epoch).
    """

    def __init__(self, data: Any, batch_size: int, seed: int, epoch_fn: Callable[[], int]) -> None:
        self.data, self.batch_size, self.seed, self.epoch_fn = data, batch_size, seed, epoch_fn

    def __len__(self) -> int:
        return self.data.num_batches("train", self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.data.batches("train", self.batch_size, seed=self.seed, epoch=self.epoch_fn()))


class EstimatorModule(pl.LightningModule):
    """Trains ``model`` with ``estimator`` + optimizer; collects history, clock, gradient quality, target."""

    def __init__(self, model: nn.Module, estimator: Estimator, loss_fn: Callable[..., torch.Tensor],
                 correct_fn: Callable[[torch.Tensor, torch.Tensor], int], data: Any, *, optimizer: str,
                 lr: float, weight_decay: float, lr_schedule: str, total_steps: int,
                 grad_quality_every: int | None, target: float | None, parallel: str = "data",
                 step_cost: dict[str, Any] | None = None) -> None:
        """``parallel``: multi-rank mode (suite/training/parallel_modes.py), ``"data"`` = batch shards,
        ``"copies"`` = ddp_copies. ``step_cost``: ``{"memory": peak_memory_bytes object, "flops": float,
        "forward_passes": float}`` of one step, measured by the runner before training."""
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.estimator = estimator
        self.loss_fn = loss_fn
        self.correct_fn = correct_fn
        self.data = data
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.lr_schedule, self.total_steps = lr_schedule, total_steps
        self.clock = StepClock()
        self.gradient_quality = GradientQuality(grad_quality_every) if estimator.name != "bp" else None
        self.time_to_target = TimeToTarget(target)
        self.history: list[dict[str, Any]] = []
        self._epoch_losses: list[float] = []
        self.last_loss: float | None = None
        self.parallel = parallel
        self.step_cost: dict[str, Any] = dict(step_cost or {})

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = build_optimizer(self.optimizer_name, params, self.lr, self.weight_decay)
        sched = build_scheduler(self.lr_schedule, opt, self.total_steps)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        self.clock.device = self.device
        apply_rank_seed(self.estimator, self.global_rank, self.parallel)  # per-rank noise

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch  # the global batch: every rank holds it, estimates on its shard (xs, ys)
        xs, ys = shard_batch(x, y, mode=self.parallel)
        opt = self.optimizers()
        sched = self.lr_schedulers()
        step = int(self.global_step)
        self.clock.begin_step()
        self.clock.start()
        loss, logs = self.estimator.estimate(self.model, self.loss_fn, xs, ys)
        loss, sync_logs = sync_after_estimate(self.model, self.estimator, loss, len(xs))
        logs = {**logs, **sync_logs}
        self.clock.stop()
        value = float(loss)
        if not math.isfinite(value):
            raise Diverged(f"training loss became {value} at step {step} (epoch {self.current_epoch})")
        if self.gradient_quality is not None and self.gradient_quality.due(step):
            point = self.gradient_quality.measure(self.model, self.loss_fn, x, y, step)
            # straight to the loggers: self.log would repeat the last value on every later step's row
            for logger in self.loggers:
                logger.log_metrics({f"grad_{k}": v for k, v in point.items() if k != "step"}, step=step)
        self.clock.start()
        opt.step()
        if sched is not None:
            sched.step()
        self.clock.stop()
        self.clock.end_step(len(xs))
        self.last_loss = value
        self._epoch_losses.append(value)
        self.log("train_loss", value, on_step=True, on_epoch=False, prog_bar=True)
        # The estimator's counters (forward passes, rows, noise bytes, σ) barely change between steps;
        # logging them every step cost ~8% of a digits-sized step (lrbench bench: harness_overhead).
        if step % ESTIMATOR_LOG_EVERY == 0:
            extra = {f"est_{k}": float(v) for k, v in logs.items() if isinstance(v, (int, float))}
            if extra:
                self.log_dict(extra, on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ evaluation (untimed)
    @torch.no_grad()
    def accuracy(self, split: str) -> float:
        was_training = self.model.training
        self.model.eval()
        correct = total = 0
        for x, y in self.data.batches(split, EVAL_BATCH_SIZE, shuffle=False, augment=False):
            correct += int(self.correct_fn(self.model(x), y))
            total += int(y.numel())
        self.model.train(was_training)
        return correct / max(1, total)

    def evaluate(self, log: bool = True) -> dict[str, Any]:
        """Evaluate val/test now and append a history row (once per step count)."""
        step = int(self.global_step)
        if self.history and self.history[-1]["step"] == step:
            return self.history[-1]
        losses = self._epoch_losses
        row = {"epoch": int(self.current_epoch), "step": step,
               "train_loss": sum(losses) / len(losses) if losses else None,
               "val_accuracy": self.accuracy("val"), "test_accuracy": self.accuracy("test"),
               "wall_time": self.clock.elapsed()}
        self._epoch_losses = []
        self.history.append(row)
        self.time_to_target.update(row["val_accuracy"], row["wall_time"], step)
        if log:
            self.log_dict({"val_accuracy": row["val_accuracy"], "test_accuracy": row["test_accuracy"]},
                          on_step=False, on_epoch=True, prog_bar=True)
        return row

    def on_train_epoch_end(self) -> None:
        self.evaluate(log=True)

    # ------------------------------------------------------------------ summary
    def accuracy_metrics(self) -> dict[str, Any]:
        """final/best val and test accuracy (test at the best-val epoch, first one on ties), final train loss."""
        if not self.history:
            return {"val_accuracy_final": None, "val_accuracy_best": None, "test_accuracy_final": None,
                    "test_accuracy_best": None, "train_loss_final": self.last_loss}
        last = self.history[-1]
        best = max(self.history, key=lambda r: r["val_accuracy"])
        return {"val_accuracy_final": last["val_accuracy"], "val_accuracy_best": best["val_accuracy"],
                "test_accuracy_final": last["test_accuracy"], "test_accuracy_best": best["test_accuracy"],
                "train_loss_final": last["train_loss"] if last["train_loss"] is not None else self.last_loss}

    def collect_metrics(self) -> dict[str, Any]:
        """The RESULTS.md ``metrics`` object (``robustness`` is filled by the runner)."""
        cost = self.step_cost
        return {
            **self.accuracy_metrics(),
            "time_to_target": self.time_to_target.result(),
            "history": list(self.history),
            "peak_memory_bytes": cost.get("memory"),
            "throughput": self.clock.summary(cost.get("forward_passes"), cost.get("flops")),
            "gradient_quality": self.gradient_quality.summary() if self.gradient_quality is not None else None,
            "robustness": None,
        }
