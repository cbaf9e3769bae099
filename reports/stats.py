"""Summary statistics: mean ± t-interval over seeds, and AlgoPerf-style performance profiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .labels import natural_key


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width, n) of the Student-t interval ``mean ± t_{(1+c)/2, n-1} · s / √n``.

    NaNs are ignored. With n = 1 the half-width is NaN (no interval from one seed); n = 0 gives NaNs.
    """
    array = np.asarray([v for v in values if v == v], dtype=float)
    n = len(array)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(array.mean())
    if n == 1:
        return mean, math.nan, 1
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * array.std(ddof=1) / math.sqrt(n))
    return mean, half, n


def sig3(value: float) -> str:
    """A number at 3 significant figures: ``0.953``, ``6130``, ``1.94e+07``, ``0.000412``; ``—`` for NaN/None."""
    if value is None or value != value:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    rounded = float(f"{value:.3g}")
    if abs(rounded) >= 1e6 or abs(rounded) < 1e-4:
        return f"{rounded:.3g}"
    return format(rounded, "g")


def format_mean_ci(mean: float, half: float, n: int) -> str:
    """``0.971 ± 0.00312`` (3 significant figures each); the mean alone when there is no interval (n = 1:
    the table says so once, not in every cell); ``—`` when there is no value."""
    if n == 0 or mean != mean:
        return "—"
    if n == 1 or half != half:
        return sig3(mean)
    return f"{sig3(mean)} ± {sig3(half)}"


def summarize(frame: pd.DataFrame, by: list[str], value: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per group of ``by``: ``mean, ci95 (half-width), n, text`` of column ``value`` over rows (seeds)."""
    rows = []
    for key, group in frame.groupby(by, sort=True, dropna=False):
        mean, half, n = mean_ci(group[value].tolist(), confidence)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=True)), "mean": mean, "ci95": half, "n": n,
                     "text": format_mean_ci(mean, half, n)})
    table = pd.DataFrame(rows, columns=[*by, "mean", "ci95", "n", "text"])
    return sort_naturally(table, by)


def sort_naturally(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows ordered by ``by`` with embedded numbers compared by value (``copies=4`` before ``copies=16``)."""
    if frame.empty:
        return frame
    order = sorted(range(len(frame)), key=lambda i: tuple(natural_key(frame.iloc[i][c]) for c in by))
    return frame.iloc[order].reset_index(drop=True)


def performance_ratios(times: pd.DataFrame, problem: str, solver: str, time: str) -> pd.DataFrame:
    """AlgoPerf performance ratios r_{s,p} = t_{s,p} / min_s t_{s,p}.

    ``times`` has one row per (solver, problem, seed); the time of a (solver, problem) pair is the median
    over seeds, with a missed target counted as +inf (so a pair that misses in most seeds is +inf).
    Problems no solver solved are dropped. Returns columns ``solver, problem, ratio``.
    """
    filled = times.assign(_t=times[time].fillna(math.inf))
    median = filled.groupby([solver, problem])["_t"].median().unstack(problem)
    best = median.min(axis=0)
    solved = best[np.isfinite(best)].index
    ratios = median[solved] / best[solved]
    return ratios.stack().rename("ratio").reset_index().rename(columns={solver: "solver", problem: "problem"})


def performance_profile(ratios: pd.DataFrame, taus: np.ndarray | None = None) -> pd.DataFrame:
    """ρ_s(τ) = fraction of problems whose ratio for solver s is ≤ τ; columns ``solver, tau, fraction``."""
    finite = ratios["ratio"][np.isfinite(ratios["ratio"])]
    top = max(2.0, float(finite.max()) * 1.1) if len(finite) else 2.0
    taus = np.geomspace(1.0, top, 200) if taus is None else taus
    n_problems = ratios["problem"].nunique()
    rows = []
    for solver_name, group in ratios.groupby("solver"):
        values = group["ratio"].to_numpy()
        for tau in taus:
            rows.append({"solver": solver_name, "tau": float(tau),
                         "fraction": float((values <= tau).sum()) / n_problems})
    return pd.DataFrame(rows, columns=["solver", "tau", "fraction"])
