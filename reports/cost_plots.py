"""Figures against cost: accuracy-vs-cost scatter with the Pareto front (one mark per seed), per task."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter

from . import plots
from .labels import natural_key


def pareto_front(costs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (lower cost, higher value), ordered by cost.

    A point is on the front when no other point has cost ≤ its cost and value > its value (or equal value
    and smaller cost): scanning by increasing cost, keep each point that beats the best value so far.
    """
    order = np.lexsort((-values, costs))
    front, best = [], -np.inf
    for i in order:
        if values[i] > best:
            front.append(i)
            best = values[i]
    return np.asarray(front, dtype=int)


def scatter_front_figure(data: pd.DataFrame, path: Path, *, xs: dict[str, str], y: str, hue: str, col: str,
                         ylabel: str, logx: bool = True, front: bool = True) -> Path:
    """One panel per (row = x column in ``xs``, column = ``col`` value): ``y`` against x, one mark per row of
    ``data`` coloured by ``hue``, and the Pareto front (lowest x for the highest y) as a dashed step line."""
    tasks = sorted(data[col].dropna().unique(), key=natural_key)
    rows = [x for x in xs if data[x].notna().any()]
    hue_order = sorted(data[hue].dropna().unique(), key=natural_key)
    palette = dict(zip(hue_order, sns.color_palette("tab20" if len(hue_order) > 10 else "tab10", len(hue_order)),
                       strict=True))
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(4.3 * len(tasks) + 2.5, 3.4 * len(rows)),
                             squeeze=False)
    for r, x in enumerate(rows):
        for c, task in enumerate(tasks):
            ax = axes[r][c]
            panel = data[(data[col] == task)].dropna(subset=[x, y])
            for label in hue_order:
                points = panel[panel[hue] == label]
                if not points.empty:
                    ax.scatter(points[x], points[y], s=28, color=palette[label], label=label, alpha=0.85,
                               edgecolor="white", linewidth=0.5)
            if front and len(panel) > 1:
                idx = pareto_front(panel[x].to_numpy(float), panel[y].to_numpy(float))
                fx, fy = panel[x].to_numpy(float)[idx], panel[y].to_numpy(float)[idx]
                ax.step(fx, fy, where="post", color="0.35", linestyle="--", linewidth=1, label=None)
            if logx and (panel[x] > 0).all() and not panel.empty:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # labels at powers of ten only (no overlap)
            ax.set_title(str(task) if r == 0 else "")
            ax.set_xlabel(xs[x])
            ax.set_ylabel(ylabel if c == 0 else "")
    handles, labels = [], []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
    fig.tight_layout()
    return plots.save_figure(fig, path)
