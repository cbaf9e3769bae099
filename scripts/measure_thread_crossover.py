"""Where do more torch threads start to pay? Wall time of one training step at 1 vs N threads per task.

    .venv/bin/python scripts/measure_thread_crossover.py [--tasks digits-cnn mnist-cnn ...] [--steps 20]

For each task and estimator: FLOPs of one step (``FlopCounterMode``) and the median wall time of
``estimate()`` + ``optimizer.step()`` on a random batch of the task's input shape (timing needs no real
data), at every thread count of ``--threads``, rounds interleaved so that both see the same machine.
Prints the speed-up of N threads over 1 next to the step's FLOPs; ``suite.training.threads.SMALL_STEP_FLOPS``
(the step size under which a run gets one thread) comes from this table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lrbench.estimators import get_estimator
from lrbench.tasks import get_task


def step_fn(task: str, estimator: str, batch: int):
    spec = get_task(task)
    model = spec.build_model()
    x = torch.rand(batch, *spec.input_shape)
    y = torch.randint(0, spec.num_classes, (batch,))
    options = {"copies": 16} if estimator in ("ulr", "alr") else {}
    est = get_estimator(estimator, seed=0, **options)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        est.estimate(model, spec.loss_fn, x, y)
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["digits-mlp", "digits-cnn", "mnist-cnn", "cifar10-convnet"])
    parser.add_argument("--estimators", nargs="+", default=["bp", "ulr"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, len(os.sched_getaffinity(0))])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}, cores {len(os.sched_getaffinity(0))}")
    print(f"{'task':18} {'est':5} {'MFLOP/step':>11} " + " ".join(f"{f'ms@{n}':>9}" for n in args.threads)
          + f" {'speed-up':>9}")
    for task in args.tasks:
        for estimator in args.estimators:
            step = step_fn(task, estimator, args.batch)
            flops = FlopCounterMode(display=False)
            with flops:
                step()
            times: dict[int, list[float]] = {n: [] for n in args.threads}
            for _ in range(args.steps):
                for n in args.threads:
                    torch.set_num_threads(n)
                    start = time.perf_counter()
                    step()
                    times[n].append(time.perf_counter() - start)
            med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
            speedup = med[args.threads[0]] / med[args.threads[-1]]
            print(f"{task:18} {estimator:5} {flops.get_total_flops() / 1e6:11.1f} "
                  + " ".join(f"{med[n]:9.2f}" for n in args.threads) + f" {speedup:9.2f}")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
