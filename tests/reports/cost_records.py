"""New-format synthetic records (with cost, budget, load and estimator defaults) for the scoreboard tests.

``with_cost(record, fp_per_step, flops_per_step, load)`` adds to a record of ``test_report_fixture`` what
the runner now writes: cumulative ``forward_passes``/``flops``/``cpu_seconds`` in every history row,
``metrics.cost``, the cost at the target, ``load`` and ``estimator_defaults``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.reports.test_report_fixture import make_record

DEFAULTS = {"bp": {}, "ulr": {"copies": 16, "sigma": 0.01, "injection": "global", "antithetic": False,
                              "baseline": "none"},
            "alr": {"copies": 16, "sigma": 0.01, "injection": "global", "antithetic": False, "baseline": "none"}}


def with_cost(record: dict[str, Any], fp_per_step: float, flops_per_step: float, load: float = 1.0) -> dict[str, Any]:
    metrics = record["metrics"]
    for row in metrics["history"]:
        row["forward_passes"] = row["step"] * fp_per_step
        row["flops"] = row["step"] * flops_per_step
        row["cpu_seconds"] = row["wall_time"] * 0.98
    last = metrics["history"][-1]
    metrics["cost"] = {"forward_passes": last["forward_passes"], "flops": last["flops"],
                       "cpu_seconds": last["cpu_seconds"], "wall_seconds": last["wall_time"]}
    ttt = metrics["time_to_target"]
    hit = next((h for h in metrics["history"] if h["step"] == ttt["steps"]), None)
    for unit in ("forward_passes", "flops", "cpu_seconds"):
        ttt[unit] = hit[unit] if hit else None
    metrics["throughput"]["flops_per_step"] = flops_per_step
    record["load"] = {"start": {"load_average": [load, load, load], "cpu_count": 2},
                      "end": {"load_average": [load, load, load], "cpu_count": 2}}
    record["estimator_defaults"] = DEFAULTS[record["config"]["estimator"]]
    return record


def cost_records(load: float = 1.0) -> list[dict[str, Any]]:
    """digits-mlp and digits-cnn × {bp, ulr K=16 clean, ulr K=64 clean antithetic, alr K=16}, 3 seeds each."""
    variants = [("bp", {}, 1.0, 1.0, 2e6),
                ("ulr", {"copies": 16, "sigma": 0.01, "baseline": "clean"}, 0.8, 17.0, 1.2e6),
                ("ulr", {"copies": 64, "sigma": 0.01, "baseline": "clean", "antithetic": True}, 0.95, 65.0, 4e6),
                ("alr", {"copies": 16, "sigma": 0.01}, 0.6, 17.0, 0.7e6)]
    records = []
    for task in ("digits-mlp", "digits-cnn"):
        for estimator, options, quality, passes, memory in variants:
            for seed in (0, 1, 2):
                record = make_record(task, estimator, options, seed, quality=quality, memory=memory + 1e4 * seed,
                                     max_epochs=6)
                records.append(with_cost(record, passes, passes * 3.1e5 * (2.0 if estimator == "bp" else 1.0),
                                         load))
    return records


def write_records(root: Path, records: list[dict[str, Any]]) -> Path:
    (root / "runs").mkdir(parents=True, exist_ok=True)
    for record in records:
        (root / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    return root
