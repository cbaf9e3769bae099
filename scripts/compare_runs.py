"""Compare two results folders run for run: ``python scripts/compare_runs.py BEFORE AFTER``.

For every run id of either folder it prints the test accuracy, the mean gradient cosine against BP and
the peak memory (live tensor bytes) before and after, and whether each pair is equal; timings differ
between any two runs and are left out. Exit code 0 when every run id is in both folders and every
compared number is equal, 1 otherwise. Reads only the JSON records (no torch).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# column -> path inside a record's ``metrics``
COMPARED = {"test_accuracy": ("test_accuracy_final",), "grad_cosine": ("gradient_quality", "mean_cosine"),
            "peak_memory": ("peak_memory_bytes", "max")}


def load_records(folder: Path) -> dict[str, dict[str, Any]]:
    """``run_id -> record`` of ``folder/runs/*.json`` (or ``folder/*.json`` when it is the runs folder)."""
    runs = folder / "runs" if (folder / "runs").is_dir() else folder
    return {path.stem: json.loads(path.read_text()) for path in sorted(runs.glob("*.json"))}


def metric(record: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
    value: Any = (record or {}).get("metrics")
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def compare(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> tuple[list[str], bool]:
    """Printable lines (a header, one per run id, a total) and whether everything matched."""
    lines = [f"{'run id':44s} " + "  ".join(f"{name:>31s}" for name in COMPARED)]
    all_equal = True
    for rid in sorted(set(before) | set(after)):
        cells = []
        for path in COMPARED.values():
            a, b = metric(before.get(rid), path), metric(after.get(rid), path)
            equal = rid in before and rid in after and a == b
            all_equal &= equal
            cells.append(f"{_show(a):>12s} {_show(b):>12s} {'equal' if equal else 'DIFF':>5s}")
        lines.append(f"{rid:44s} " + "  ".join(cells))
    lines.append(f"{len(before)} runs before, {len(after)} after: "
                 + ("every run id in both, every number equal" if all_equal else "DIFFERENCES above"))
    return lines, all_equal


def _show(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    lines, ok = compare(load_records(args.before), load_records(args.after))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
