"""The progress a suite shows: one bar over its runs and one line per finished run (never per-step bars
from several workers interleaved)."""

from __future__ import annotations

from typing import Any


class SuiteProgress:
    """``finished(kind, run_id, record)`` for each event of ``suite.training.worker`` (deduplicated by run id)."""

    def __init__(self, ids: list[str], skipped: list[str], enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.total = len(ids)
        self.enabled = enabled
        self.seen: set[str] = set(skipped)
        self.bar = tqdm(total=self.total, initial=len(self.seen), desc="suite", unit="run", position=0,
                        disable=not enabled, leave=True)

    def finished(self, kind: str, rid: str, record: dict[str, Any] | None) -> None:
        from .execute import finished_line

        if rid in self.seen:
            return
        self.seen.add(rid)
        if self.enabled:
            if kind == "ran" and record is not None:
                self.bar.write(finished_line(len(self.seen), self.total, record))
            else:
                status = record.get("status") if record else "final"
                self.bar.write(f"[{len(self.seen)}/{self.total}] {rid}: {status} (by another worker)")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
