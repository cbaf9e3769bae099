"""``harness_overhead``: steady-state step time of a Lightning run ÷ that of a bare PyTorch loop.

Both loops train the same model with the same estimator (layer-wise ULR, the bench settings) and plain
SGD on the same ``DataLoader`` for ``cfg.harness_steps`` steps. Each loop's time (on ``timing.clock_for``'s
clock: thread CPU time on one CPU thread) is measured from the start of its 3rd batch to the end of its last (Trainer construction, ``fit`` set-up and the first two
steps are excluded: they are a constant, not a per-step cost)::

    harness_overhead = median_r  t_r(Lightning steps) / t_r(bare steps)

rounds interleaved (bare, Lightning, bare, …). ``fit_overhead`` reports the same ratio for the whole
``fit`` call against the whole bare loop (set-up included) for information.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .config import BenchConfig, lr_options
from .models import make_net, per_row_cross_entropy
from .timing import clock_for, synchronize
from .util import build_estimator

WARMUP_STEPS = 2


class _StepClock:
    """Wall time from the start of step ``WARMUP_STEPS`` to the end of the last step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.clock = clock_for(device)[1]
        self.start = self.end = 0.0

    def batch_start(self, index: int) -> None:
        if index == WARMUP_STEPS:
            synchronize(self.device)
            self.start = self.clock()

    def batch_end(self) -> None:
        synchronize(self.device)
        self.end = self.clock()

    @property
    def seconds(self) -> float:
        return self.end - self.start


def bare_loop(model: nn.Module, estimator: Any, loader: DataLoader, steps: int, clock: _StepClock) -> None:
    """for (x, y) in loader: estimate; SGD step — the reference loop."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for index, (x, y) in enumerate(loader):
        if index == steps:
            break
        clock.batch_start(index)
        estimator.estimate(model, per_row_cross_entropy, x, y)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.batch_end()


def lightning_loop(model: nn.Module, estimator: Any, loader: DataLoader, steps: int, clock: _StepClock,
                   device: str) -> None:
    """The same steps through ``pytorch_lightning.Trainer.fit`` (manual optimisation)."""
    import pytorch_lightning as pl

    class _Clock(pl.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            clock.batch_start(batch_idx)

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            clock.batch_end()

    module = _lightning_module(model, estimator)
    with warnings.catch_warnings(), _quiet_lightning():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_steps=steps, accelerator="gpu" if device.startswith("cuda") else "cpu",
                             devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, callbacks=[_Clock()])
        trainer.fit(module, train_dataloaders=loader)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's info lines (GPU available, tips, 'max_steps reached') off for the bench's output."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _lightning_module(model: nn.Module, estimator: Any) -> Any:
    """A minimal LightningModule: manual optimisation, one ``estimate`` + SGD step per batch."""
    import pytorch_lightning as pl

    class BenchModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.automatic_optimization = False

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.model.parameters(), lr=1e-3)

        def training_step(self, batch: Any, batch_idx: int) -> None:
            optimizer = self.optimizers()
            x, y = batch
            estimator.estimate(self.model, per_row_cross_entropy, x, y)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return BenchModule()


def measure_harness(cfg: BenchConfig, missing: set[str]) -> dict[str, Any] | None:
    """Interleaved bare/Lightning runs; ``None`` when ULR is not installed."""
    if build_estimator("ulr", lr_options(cfg), missing) is None:
        return None
    device = torch.device(cfg.device)
    size = cfg.net_size("speed", "mlp")
    net = make_net("mlp", cfg.speed_depth, width=size.width, batch=size.batch * cfg.harness_steps,
                   image=size.image, seed=cfg.seed, device=cfg.device)
    loader = DataLoader(TensorDataset(net.inputs, net.targets), batch_size=size.batch, shuffle=False)
    runs: dict[str, Callable[[_StepClock], None]] = {
        "bare": lambda clock: bare_loop(net.model, build_estimator("ulr", lr_options(cfg), missing), loader,
                                        cfg.harness_steps, clock),
        "lightning": lambda clock: lightning_loop(net.model, build_estimator("ulr", lr_options(cfg), missing),
                                                  loader, cfg.harness_steps, clock, cfg.device),
    }
    steps: dict[str, list[float]] = {k: [] for k in runs}
    whole: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(cfg.harness_rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            clock = _StepClock(device)
            start = clock.clock()
            runs[name](clock)
            whole[name].append(clock.clock() - start)
            steps[name].append(clock.seconds)
    ratio = statistics.median(a / b for a, b in zip(steps["lightning"], steps["bare"], strict=True))
    fit = statistics.median(a / b for a, b in zip(whole["lightning"], whole["bare"], strict=True))
    return {"overhead": ratio, "fit_overhead": fit, "steps": cfg.harness_steps, "timed_steps":
            cfg.harness_steps - WARMUP_STEPS, "median_step_seconds": {
                k: statistics.median(v) / (cfg.harness_steps - WARMUP_STEPS) for k, v in steps.items()},
            "lightning_module": "suite.bench.harness.BenchModule (minimal, manual optimisation)"}
