"""``harness_overhead``: steady-state step time of a Lightning run ÷ that of a bare PyTorch loop.

Both loops train the same model with the same estimator (layer-wise ULR, the bench settings) and SGD
(momentum 0.9, as the suite's ``sgd``) on the same shuffled batches of one ``TaskData`` for
``cfg.harness_steps`` steps; the Lightning run is the suite's own (``EstimatorModule``, ``build_trainer``,
CSVLogger). Each loop's time (on ``timing.clock_for``'s clock: thread CPU time on one CPU thread) is
measured from the start of its 3rd batch to the end of its last (Trainer construction, ``fit`` set-up and
the first two steps are excluded: they are a constant, not a per-step cost)::

    harness_overhead = median_r  t_r(Lightning steps) / t_r(bare steps)

rounds interleaved (bare, Lightning, bare, …). ``fit_overhead`` reports the same ratio for the whole
``fit`` call against the whole bare loop (set-up included) for information.
"""

from __future__ import annotations

import copy
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lrbench.suite.bench.sizes import BenchConfig, lr_options
from lrbench.tasks.data import TaskData

from .models import make_net, per_row_cross_entropy
from .timing import clock_for, synchronize
from .util import build_estimator

WARMUP_STEPS = 2
LR = 0.0  # the update is computed and applied, but moves nothing: every run does the same work, none diverges


class _StepClock:
    """Clock time from the start of step ``WARMUP_STEPS`` to the end of the last step."""

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


def bare_loop(model: nn.Module, estimator: Any, data: TaskData, steps: int, clock: _StepClock) -> None:
    """for (x, y) in the same shuffled batches: estimate; SGD step — the reference loop."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for index, (x, y) in enumerate(data.batches("train", len(data.val[0]), seed=0, epoch=0)):
        if index == steps:
            break
        clock.batch_start(index)
        estimator.estimate(model, per_row_cross_entropy, x, y)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.batch_end()


def lightning_loop(model: nn.Module, estimator: Any, data: TaskData, steps: int, clock: _StepClock,
                   device: str, log_dir: str) -> None:
    """The same steps as a suite run makes them: ``suite.training.runner.build_trainer`` (CSVLogger, logging every
    step) fitting ``suite.training.lightning_module.EstimatorModule`` on ``TrainBatches`` (plain SGD, no schedule,
    no gradient-quality probes, which are extra work rather than harness overhead)."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from lrbench.suite.training.lightning_module import EstimatorModule, TrainBatches
    from lrbench.suite.training.runner import _quiet_lightning, build_trainer

    class _Clock(pl.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            clock.batch_start(batch_idx)

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            clock.batch_end()

    module = EstimatorModule(model, estimator, per_row_cross_entropy, _count_correct, data, optimizer="sgd",
                             lr=LR, weight_decay=0.0, lr_schedule="none", total_steps=steps,
                             grad_quality_every=None, target=None)
    config = {"accelerator": "gpu" if device.startswith("cuda") else "cpu", "devices": 1, "strategy": "auto",
              "max_epochs": None, "max_steps": steps}
    with warnings.catch_warnings(), _quiet_lightning():
        warnings.simplefilter("ignore")
        trainer = build_trainer(config, loggers=[CSVLogger(save_dir=log_dir, name="bench", version="")],
                                callbacks=[_Clock()], progress=False, default_root_dir=None)
        trainer.fit(module, train_dataloaders=TrainBatches(data, len(data.val[0]), 0,
                                                           lambda: trainer.current_epoch))


def _count_correct(outputs: torch.Tensor, targets: torch.Tensor) -> int:
    return int((outputs.argmax(1) == targets).sum())


def measure_harness(cfg: BenchConfig, missing: set[str]) -> dict[str, Any] | None:
    """Interleaved bare/Lightning runs; ``None`` when ULR is not installed."""
    if build_estimator("ulr", lr_options(cfg), missing) is None:
        return None
    device = torch.device(cfg.device)
    size = cfg.net_size("speed", "mlp")
    net = make_net("mlp", cfg.speed_depth, width=size.width, batch=size.batch * cfg.harness_steps,
                   image=size.image, seed=cfg.seed, device=cfg.device)
    held_out = (net.inputs[: size.batch], net.targets[: size.batch])
    data = TaskData("bench", (net.inputs, net.targets), held_out, held_out, 10, tuple(net.inputs.shape[1:]))
    log_dir = tempfile.mkdtemp(prefix="lrbench-bench-")
    runs: dict[str, Callable[[_StepClock], None]] = {
        "bare": lambda clock: bare_loop(copy.deepcopy(net.model), build_estimator("ulr", lr_options(cfg), missing), data,
                                        cfg.harness_steps, clock),
        "lightning": lambda clock: lightning_loop(copy.deepcopy(net.model), build_estimator("ulr", lr_options(cfg), missing),
                                                  data, cfg.harness_steps, clock, cfg.device, log_dir),
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
    shutil.rmtree(log_dir, ignore_errors=True)
    ratio = statistics.median(a / b for a, b in zip(steps["lightning"], steps["bare"], strict=True))
    fit = statistics.median(a / b for a, b in zip(whole["lightning"], whole["bare"], strict=True))
    return {"overhead": ratio, "fit_overhead": fit, "steps": cfg.harness_steps, "timed_steps":
            cfg.harness_steps - WARMUP_STEPS, "median_step_seconds": {
                k: statistics.median(v) / (cfg.harness_steps - WARMUP_STEPS) for k, v in steps.items()},
            "lightning_module": "lrbench.suite.training.lightning_module.EstimatorModule via suite.training.runner.build_trainer"}
