"""``--jobs N``: N local worker processes run a suite's runs side by side.

Each worker is a spawned process (a fresh interpreter: no forked torch/OpenMP state) that stays alive for
the whole suite, so imports are paid once per worker, not once per run, and runs the claim loop of
``suite.worker`` with its own thread budget (``suite.threads``: cores // N, inter-op set at start) and, on
GPU, its own device (``CUDA_VISIBLE_DEVICES`` = one device, round-robin). Workers report every run they
finish through a queue; the parent draws the suite bar and one line per finished run (workers draw no
per-step bars). A worker that dies (kill -9) loses only its current run, which the others take over
(its claim's pid is dead); a killed parent takes its workers with it (they watch their parent).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .worker import WorkerSettings, work_through

EventFn = Callable[[str, str, "dict[str, Any] | None"], None]


def worker_device(index: int, cuda_devices: int, visible: str | None = None) -> str:
    """The CUDA device of worker ``index``: round-robin over the devices this process may use
    (``CUDA_VISIBLE_DEVICES`` when set, in its order; else 0..cuda_devices-1)."""
    text = os.environ.get("CUDA_VISIBLE_DEVICES", "") if visible is None else visible
    devices = [d.strip() for d in text.split(",") if d.strip()] or [str(i) for i in range(cuda_devices)]
    return devices[index % len(devices)]


def _worker_main(configs: list[dict[str, Any]], settings: WorkerSettings, events: Any) -> None:
    """Entry point of one worker process."""
    from . import threads

    threads.configure_process(settings.jobs)  # first thing: inter-op threads can be set only now
    try:
        work_through(configs, settings, on_event=lambda kind, rid, record: events.put((kind, rid, record)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which prints it
        events.put(("error", "", traceback.format_exc()))
        raise
    finally:
        events.put(("exit", "", None))


def run_pool(configs: list[dict[str, Any]], settings: WorkerSettings, on_event: EventFn,
             cuda_devices: int = 0) -> None:
    """Start ``settings.jobs`` workers on ``configs`` and relay their events to ``on_event`` until all exit.

    Raises RuntimeError when a worker fails outside a run (a run's own failure is a record)."""
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    settings = replace(settings, progress=False, parent_pid=os.getpid())
    workers = []
    for index in range(settings.jobs):
        env = {"CUDA_VISIBLE_DEVICES": worker_device(index, cuda_devices)} if cuda_devices else {}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # a spawned child starts with the parent's environment of this moment
        try:
            worker = ctx.Process(target=_worker_main, args=(configs, settings, events), daemon=True,
                                 name=f"lrbench-worker-{index}")
            worker.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        workers.append(worker)
    errors: list[str] = []
    exited = 0
    try:
        while exited < len(workers):
            try:
                kind, rid, payload = events.get(timeout=0.5)
            except queue_module.Empty:
                if not any(w.is_alive() for w in workers):  # killed workers send no "exit"
                    break
                continue
            if kind == "exit":
                exited += 1
            elif kind == "error":
                errors.append(str(payload))
            else:
                on_event(kind, rid, payload)
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0].strip().splitlines()[-1]}")
