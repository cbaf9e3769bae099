"""One worker of a suite: claim a run, train it, release it, until every run of the suite is final.

The same loop runs in ``lrbench run`` itself (``--jobs 1``), in each local worker process
(``suite.training.pool``, ``--jobs N``) and in each task of a SLURM job array (``suite.training.slurm``); the claims
(``suite.training.claims``) split the work, so any number of workers on any number of machines can share one
results folder::

    pending = the suite's runs
    while pending:
        for each pending run (suite order):
            waits for an earlier run of the suite (init_from / transfer_source)  -> keep pending
            try_claim: "final" -> drop;  "busy" (another live worker) -> keep pending
                       "claimed" -> run it (record written), release the claim, drop
        sleep ``poll`` seconds if this pass ran nothing

A run held by another live worker is waited for (its worker may die: its claim then goes stale and is
taken over), so a worker returns only when the whole suite is final.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrbench.schema import run_id

from .claims import DEFAULT_HEARTBEAT_EVERY, DEFAULT_STALE_AFTER, ClaimStore
from .results_store import read_record

# on_event(kind, run_id, record): kind "ran" (record of a run this worker trained) or "final" (done elsewhere)
EventFn = Callable[[str, str, "dict[str, Any] | None"], None]


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs besides the configs (picklable: it crosses process boundaries)."""

    out_dir: str
    jobs: int = 1                       # workers running at once on this machine (thread budget)
    progress: bool = False              # per-step bars (only for a lone in-process worker)
    stale_after: float = DEFAULT_STALE_AFTER
    heartbeat_every: float = DEFAULT_HEARTBEAT_EVERY
    poll: float = 1.0
    parent_pid: int | None = None       # exit when this process is gone (a killed ``lrbench run``)


def _sources(config: dict[str, Any]) -> list[str]:
    robustness = config.get("robustness") or {}
    return [str(s) for s in (config.get("init_from"), robustness.get("transfer_source")) if s]


def _waiting_for(config: dict[str, Any], suite_ids: set[str], out_dir: Path) -> bool:
    """True while a run this one starts from (``init_from``/``transfer_source``, by run id) has no record."""
    return any(s in suite_ids and read_record(out_dir, s) is None for s in _sources(config))


def work_through(configs: list[dict[str, Any]], settings: WorkerSettings, on_event: EventFn | None = None,
                 store: ClaimStore | None = None) -> list[dict[str, Any]]:
    """Run (module docstring) until every run of ``configs`` is final; returns this worker's records."""
    from .execute import execute_run

    out_dir = Path(settings.out_dir)
    store = store or ClaimStore(out_dir, stale_after=settings.stale_after, heartbeat_every=settings.heartbeat_every)
    watcher = _watch_parent(settings.parent_pid)
    suite_ids = {run_id(c) for c in configs}
    pending = list(configs)
    records: list[dict[str, Any]] = []
    try:
        while pending:
            still: list[dict[str, Any]] = []
            ran = False
            for config in pending:
                rid = run_id(config)
                if _waiting_for(config, suite_ids, out_dir):
                    still.append(config)
                    continue
                state = store.try_claim(rid)
                if state == "busy":
                    still.append(config)
                elif state == "final":
                    if on_event:
                        on_event("final", rid, read_record(out_dir, rid))
                else:
                    try:
                        record = execute_run(config, out_dir, progress=settings.progress)
                    finally:
                        store.release(rid)
                    records.append(record)
                    ran = True
                    if on_event:
                        on_event("ran", rid, record)
            pending = still
            if pending and not ran:
                time.sleep(settings.poll)
    finally:
        store.close()
        if watcher is not None:
            watcher.set()
    return records


def _watch_parent(parent_pid: int | None) -> threading.Event | None:
    """A thread that ends this process when ``parent_pid`` is no longer its parent (the parent was
    killed): its claims then go stale at once (dead pid) and the next start takes them over."""
    if parent_pid is None:
        return None
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, name="lrbench-parent-watch", daemon=True).start()
    return stop
