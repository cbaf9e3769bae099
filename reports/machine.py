"""Can wall-clock times of these runs be compared? Only when they ran on a quiet machine.

A run is *quiet* when the 1-minute load average recorded at its start and at its end (``record.load``,
``os.getloadavg()``) is at most the machine's CPU count: nothing else competed for the cores beyond what
they can run at once. Wall time is shown in reports only when every completed run is quiet; otherwise the
report says why it is hidden (the load was too high, or it was not recorded and so cannot be told).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .stats import sig3


@dataclass(frozen=True)
class WallClockVerdict:
    comparable: bool
    reason: str


def wall_clock_verdict(runs: pd.DataFrame) -> WallClockVerdict:
    """Whether the wall-clock numbers of ``runs`` (completed ones) are comparable, and a sentence why."""
    done = runs[runs["status"] == "completed"]
    if done.empty:
        return WallClockVerdict(False, "No completed run, so no wall-clock time to compare.")
    load, cpus = done.get("load_max"), done.get("cpu_count")
    if load is None or cpus is None or load.isna().any() or cpus.isna().any():
        missing = int(load.isna().sum()) if load is not None else len(done)
        return WallClockVerdict(False, f"Wall-clock times are not shown: {missing} of {len(done)} runs recorded no "
                                "load average, so whether they shared a quiet machine cannot be told. "
                                "Forward passes and FLOPs do not depend on the machine.")
    busy = done[load > cpus]
    if not busy.empty:
        worst = busy.loc[busy["load_max"].idxmax()]
        return WallClockVerdict(False, f"Wall-clock times are not shown: {len(busy)} of {len(done)} runs started or "
                                f"ended with a 1-minute load average above the CPU count (up to "
                                f"{sig3(float(worst['load_max']))} on {int(worst['cpu_count'])} CPUs): the machine was "
                                "shared, so their seconds measure the other jobs too. Forward passes and FLOPs do "
                                "not depend on the machine.")
    return WallClockVerdict(True, f"All {len(done)} runs started and ended with a 1-minute load average at most the "
                            "CPU count: wall-clock times are comparable.")
