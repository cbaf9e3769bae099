"""``--jobs N``: N local worker processes run a suite's runs side by side.

This process is worker 0; the others are spawned processes (fresh interpreters: no forked torch/OpenMP
state) that stay alive for the whole suite, so imports are paid once per worker, not once per run. Each
runs the claim loop of ``suite.training.worker`` with its own thread budget (``suite.training.threads``: cores // N,
inter-op set at start) and, on GPU, its own device (``CUDA_VISIBLE_DEVICES`` = one device, round-robin).
Spawned workers report every run they finish through a queue; the parent draws the suite bar and one line per finished run (workers draw no
per-step bars). A worker that dies (kill -9) loses only its current run, which the others take over
(its claim's pid is dead); a killed parent takes its workers with it (they watch their parent).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import threading
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
    """Run ``settings.jobs`` workers on ``configs`` — this process and ``jobs − 1`` spawned ones — and relay
    the spawned workers' events to ``on_event`` until every worker is done.

    This process is worker 0: it already paid its imports (a spawned worker pays PyTorch Lightning's and
    torch's again, 5-20 s of CPU), and it starts training while the others start up. Raises RuntimeError
    when a spawned worker fails outside a run (a run's own failure is a record)."""
    from . import threads

    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    child_settings = replace(settings, progress=False, parent_pid=os.getpid())
    workers = [_spawn(ctx, index, configs, child_settings, events, cuda_devices) for index in range(1, settings.jobs)]
    lock = threading.Lock()  # on_event is called from this thread and from the relay thread

    def locked(kind: str, rid: str, record: dict[str, Any] | None) -> None:
        with lock:
            on_event(kind, rid, record)

    errors: list[str] = []
    relay = threading.Thread(target=_relay, args=(events, workers, locked, errors), name="lrbench-relay", daemon=True)
    relay.start()
    try:
        threads.configure_process(settings.jobs)  # this worker's budget (inter-op: only if still settable)
        work_through(configs, replace(settings, progress=False), on_event=locked)
        relay.join()
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0].strip().splitlines()[-1]}")


def _spawn(ctx: Any, index: int, configs: list[dict[str, Any]], settings: WorkerSettings, events: Any,
           cuda_devices: int) -> Any:
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
    return worker


def _relay(events: Any, workers: list[Any], on_event: EventFn, errors: list[str]) -> None:
    """Pass the spawned workers' events on until each has said "exit" or died (killed workers say nothing)."""
    exited = 0
    while exited < len(workers):
        try:
            kind, rid, payload = events.get(timeout=0.5)
        except queue_module.Empty:
            if not any(w.is_alive() for w in workers):
                break
            continue
        if kind == "exit":
            exited += 1
        elif kind == "error":
            errors.append(str(payload))
        else:
            on_event(kind, rid, payload)
