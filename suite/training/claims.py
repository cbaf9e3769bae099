"""Run claims: several workers (processes, machines) share one results folder and run each run once.

A worker runs a run only after claiming it: ``DIR/claims/<run_id>.json`` holds the claim::

    {"owner": "<host>:<pid>:<random>", "host": ..., "pid": ..., "claimed_at": t0, "heartbeat": t}

The claim/takeover step is atomic under one ``filelock.FileLock`` on ``DIR/claims/claims.lock`` (an
OS lock: flock/fcntl, released by the kernel when its holder dies, so kill -9 never leaves it held; on
NFS it needs the server's lock support, as NFSv4 has). Under the lock a worker, in order:

1. reads the claim file; a claim is *live* when its heartbeat is younger than ``stale_after`` seconds and,
   when it was made on this host, its pid is alive — a live claim of another owner: not claimable;
2. reads the run's record: final (completed / diverged, or failed since this worker started — a failure
   of an earlier start is retried, as a serial re-run does) → nothing to do;
3. otherwise writes its own claim (atomically: temp + os.replace), taking over a stale one.

A holder's heartbeat thread rewrites ``heartbeat`` every ``heartbeat_every`` seconds (under the lock, only
while it still owns the claim). A run's record is written before its claim is removed, so between
"record exists" and "claim gone" no second worker can start it, and a worker killed at any moment leaves
either no record (its stale claim is taken over and the run starts again from scratch) or a final record
(nobody runs it again). Exactly-once therefore holds as long as no live worker stalls for longer than
``stale_after`` (default 120 s; heartbeat every 10 s) — a stopped (SIGSTOP) but not dead worker would be
taken over.

Heartbeats compare wall clocks of different machines: keep them NTP-synchronised (seconds of skew are
harmless against a two-minute timeout).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from lrbench.schema import FINAL_STATUSES, SKIPPED_STATUSES
from lrbench.suite.training.results_store import atomic_write_bytes, read_record

DEFAULT_STALE_AFTER = 120.0
DEFAULT_HEARTBEAT_EVERY = 10.0
LOCK_TIMEOUT = 60.0  # seconds to wait for the claims lock (held for a few file operations at a time)


def claims_dir(out_dir: Path | str) -> Path:
    return Path(out_dir) / "claims"


def claim_path(out_dir: Path | str, rid: str) -> Path:
    return claims_dir(out_dir) / f"{rid}.json"


def worker_identity() -> dict[str, Any]:
    """``{"host", "pid"}`` of this process (a record's ``hardware.worker``: which worker trained it)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _iso_to_epoch(text: Any) -> float | None:
    import datetime as _dt

    try:
        return _dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


@dataclass
class ClaimStore:
    """The claims of one worker on one results folder (module docstring for the protocol).

    ``started_at``: when this worker started (epoch seconds); a ``failed`` record finished after it is a
    failure of this round and not retried."""

    out_dir: Path
    stale_after: float = DEFAULT_STALE_AFTER
    heartbeat_every: float = DEFAULT_HEARTBEAT_EVERY
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    started_at: float = field(default_factory=time.time)
    held: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        claims_dir(self.out_dir).mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(claims_dir(self.out_dir) / "claims.lock"), timeout=LOCK_TIMEOUT)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()  # ``held`` is shared with the heartbeat thread

    # ----------------------------------------------------------------- reading
    def read_claim(self, rid: str) -> dict[str, Any] | None:
        try:
            claim = json.loads(claim_path(self.out_dir, rid).read_text())
        except (OSError, ValueError):
            return None
        return claim if isinstance(claim, dict) else None

    def is_live(self, claim: dict[str, Any] | None, now: float | None = None) -> bool:
        """A claim whose heartbeat is recent and whose process, when on this host, still exists."""
        if not claim:
            return False
        now = time.time() if now is None else now
        try:
            fresh = now - float(claim["heartbeat"]) < self.stale_after
        except (KeyError, TypeError, ValueError):
            return False
        if fresh and claim.get("host") == socket.gethostname() and isinstance(claim.get("pid"), int):
            return _pid_alive(claim["pid"])
        return fresh

    def is_final(self, rid: str) -> bool:
        """The run needs no work from this worker: a kept record, or a failure since this worker started."""
        record = read_record(self.out_dir, rid)
        if record is None or record.get("status") not in FINAL_STATUSES:
            return False
        if record["status"] in SKIPPED_STATUSES:
            return True
        finished = _iso_to_epoch(record.get("finished_at"))
        return finished is not None and finished >= int(self.started_at)  # record times have 1 s resolution

    # ----------------------------------------------------------------- claiming
    def try_claim(self, rid: str) -> str:
        """``"claimed"`` (this worker now owns ``rid``), ``"busy"`` (a live claim of another worker) or
        ``"final"`` (nothing left to do)."""
        with self._lock:
            claim = self.read_claim(rid)
            if claim and claim.get("owner") != self.owner and self.is_live(claim):
                return "busy"
            if self.is_final(rid):
                if claim and not self.is_live(claim):  # a killed worker's leftover: tidy
                    claim_path(self.out_dir, rid).unlink(missing_ok=True)
                return "final"
            if claim and claim.get("owner") != self.owner:
                _remove_temporaries(self.out_dir, rid)  # a killed writer's half-written record copy
            now = time.time()
            self._write(rid, {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                              "claimed_at": now, "heartbeat": now,
                              "taken_over_from": claim.get("owner") if claim else None})
        with self._mutex:
            self.held.add(rid)
        self._ensure_heartbeat()
        return "claimed"

    def release(self, rid: str) -> None:
        """Drop the claim (after the run's record is written)."""
        with self._mutex:
            self.held.discard(rid)
        with self._lock:
            claim = self.read_claim(rid)
            if claim and claim.get("owner") == self.owner:
                claim_path(self.out_dir, rid).unlink(missing_ok=True)

    def owns(self, rid: str) -> bool:
        claim = self.read_claim(rid)
        return bool(claim) and claim.get("owner") == self.owner

    def _write(self, rid: str, claim: dict[str, Any]) -> None:
        atomic_write_bytes(claim_path(self.out_dir, rid), json.dumps(claim).encode())

    # ----------------------------------------------------------------- heartbeat
    def beat(self) -> None:
        """Refresh the heartbeat of every claim this worker holds (and still owns)."""
        with self._mutex:
            held = sorted(self.held)
        if not held:
            return
        with self._lock:
            for rid in held:
                claim = self.read_claim(rid)
                if claim and claim.get("owner") == self.owner:
                    claim["heartbeat"] = time.time()
                    self._write(rid, claim)

    def _ensure_heartbeat(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat_loop, name="lrbench-claim-heartbeat", daemon=True)
            self._thread.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the claim only goes stale after many
                pass

    def close(self) -> None:
        """Stop the heartbeat thread (held claims are left for their runs' release calls)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _remove_temporaries(out_dir: Path, rid: str) -> None:
    """Temporary files of ``atomic_write_bytes`` for this run's record left by a killed worker."""
    for path in (Path(out_dir) / "runs").glob(f".{rid}.json.*.tmp"):
        path.unlink(missing_ok=True)
