"""Run claims (suite/training/claims.py): atomic claim, heartbeat, stale takeover, final records, tidy-up."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from lrbench.suite.training.claims import ClaimStore, claim_path
from lrbench.suite.training.results_store import write_record

RID = "digits-mlp__bp__0123456789__s0"


def _record(status: str, finished_at: str) -> dict:
    return {"run_id": RID, "status": status, "finished_at": finished_at}


def test_a_claimed_run_is_busy_for_others_and_final_after_its_record(tmp_path: Path) -> None:
    a, b = ClaimStore(tmp_path), ClaimStore(tmp_path)
    try:
        assert a.try_claim(RID) == "claimed" and a.owns(RID)
        claim = json.loads(claim_path(tmp_path, RID).read_text())
        assert claim["owner"] == a.owner and claim["host"] == socket.gethostname() and claim["pid"] > 0
        assert b.try_claim(RID) == "busy"
        write_record(tmp_path, _record("completed", "2026-01-01T00:00:00+00:00"))
        a.release(RID)
        assert not claim_path(tmp_path, RID).exists()
        assert b.try_claim(RID) == "final"
    finally:
        a.close()
        b.close()


def test_stale_heartbeat_is_taken_over_after_the_timeout(tmp_path: Path) -> None:
    a = ClaimStore(tmp_path, stale_after=0.6, heartbeat_every=0.1)
    b = ClaimStore(tmp_path, stale_after=0.6, heartbeat_every=0.1)
    try:
        assert a.try_claim(RID) == "claimed"
        time.sleep(1.0)  # a's heartbeat thread keeps the claim fresh
        assert b.try_claim(RID) == "busy"
        a.close()        # a stops beating (a hung worker): after stale_after its claim is taken over
        assert b.try_claim(RID) == "busy"
        time.sleep(0.8)
        assert b.try_claim(RID) == "claimed"
        claim = json.loads(claim_path(tmp_path, RID).read_text())
        assert claim["owner"] == b.owner and claim["taken_over_from"] == a.owner
        a.beat()         # the old owner's late heartbeat does not steal it back
        assert b.owns(RID) and not a.owns(RID)
    finally:
        b.close()


def test_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    claim_path(tmp_path, RID).parent.mkdir(parents=True)
    claim_path(tmp_path, RID).write_text(json.dumps({"owner": f"x:{pid}:1", "host": socket.gethostname(),
                                                     "pid": pid, "heartbeat": time.time()}))
    leftover = tmp_path / "runs" / f".{RID}.json.abc.tmp"  # a record write killed half-way
    leftover.parent.mkdir()
    leftover.write_text("{")
    b = ClaimStore(tmp_path)  # default two-minute timeout: the dead pid decides
    try:
        assert b.try_claim(RID) == "claimed"
        assert not leftover.exists()
    finally:
        b.close()


def test_failure_of_this_round_is_final_a_failure_of_an_earlier_start_is_retried(tmp_path: Path) -> None:
    store = ClaimStore(tmp_path, started_at=time.time())
    try:
        write_record(tmp_path, _record("failed", "2020-01-01T00:00:00+00:00"))
        assert not store.is_final(RID)
        write_record(tmp_path, _record("failed", "2999-01-01T00:00:00+00:00"))
        assert store.try_claim(RID) == "final"
        write_record(tmp_path, _record("diverged", "2020-01-01T00:00:00+00:00"))
        assert store.is_final(RID)
    finally:
        store.close()
