"""Figure helpers: one function per kind of figure, each saving one PNG (seaborn on the Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # non-interactive: reports are drawn on headless machines

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator  # noqa: E402

from .labels import natural_key  # noqa: E402

sns.set_theme(context="notebook", style="whitegrid")
_DPI = 110


def line_figure(data: pd.DataFrame, path: Path, *, x: str, y: str, hue: str, col: str | None = None,
                row: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
                logx: bool = False, logy: bool = False, per_seed: bool = False, sharey: bool = True, sharex: bool = False,
                drawstyle: str | None = None, markers: bool = True, integer_x: bool = False,
                logy_rows: tuple[str, ...] = ()) -> Path:
    """Lines of ``y`` against ``x``, one colour per ``hue`` value, one panel per ``col`` (× ``row``).

    With several rows per (x, hue) the line is the mean and the band its 95% CI (seaborn bootstrap);
    ``per_seed=True`` draws one line per seed instead (for x values that differ between seeds, such as
    wall time). ``integer_x`` puts ticks on whole numbers only (epochs); ``logy`` a log y axis (errors
    that follow a power law, such as 1/√r); ``logy_rows`` a log y axis on the named rows only.
    """
    kwargs: dict = {}
    if per_seed:
        kwargs.update(units="seed", estimator=None)
    else:
        kwargs.update(errorbar=("ci", 95))
    if drawstyle:
        kwargs["drawstyle"] = drawstyle
    elif markers:
        kwargs["marker"] = "o"
    facet: dict = {"sharey": sharey, "sharex": sharex}
    col_wrap = None
    if col is not None and row is None:
        col_wrap = min(3, max(1, data[col].nunique()))
    hue_order = sorted(data[hue].dropna().unique(), key=natural_key)
    palette = "tab20" if len(hue_order) > 10 else "tab10"
    grid = sns.relplot(data=data, kind="line", x=x, y=y, hue=hue, col=col, row=row, col_wrap=col_wrap,
                       hue_order=hue_order, palette=palette, height=_panel_height(len(hue_order), row, data),
                       aspect=1.35, facet_kws=facet,
                       row_order=_order(data, row), col_order=_order(data, col), **kwargs)
    if logx:
        grid.set(xscale="log")
        _integer_log_ticks(grid, data[x])
    elif integer_x:
        for ax in grid.axes.flat:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    log_axes = list(grid.axes.flat) if logy else []
    if row is not None and logy_rows:
        for i, name in enumerate(_order(data, row) or []):
            if name in logy_rows:
                log_axes += list(grid.axes[i, :])
    if log_axes:
        for ax in log_axes:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
    grid.set_axis_labels(x if xlabel is None else xlabel, y if ylabel is None else ylabel)
    _titles(grid, col, row)
    return _save(grid.figure, path)


def heatmap_figure(matrices: dict[str, pd.DataFrame], path: Path, *, xlabel: str, ylabel: str,
                   value_label: str, fmt: str = ".2f", vmin: float = 0.0, vmax: float = 1.0) -> Path:
    """One annotated heatmap per entry of ``matrices`` (panel title -> frame of rows × columns)."""
    n = len(matrices)
    widest = max(m.shape[1] for m in matrices.values())
    tallest = max(m.shape[0] for m in matrices.values())
    fig, axes = plt.subplots(1, n, figsize=(max(4.5, 1.1 * widest + 3) * n, 1.0 + 0.55 * tallest + 1.2),
                             squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items(), strict=True):
        sns.heatmap(matrix, ax=ax, annot=True, fmt=fmt, vmin=vmin, vmax=vmax, cmap="viridis",
                    cbar_kws={"label": value_label})
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", rotation=30)
        ax.tick_params(axis="y", rotation=0)
    return _save(fig, path)


def grouped_bar_figure(data: pd.DataFrame, path: Path, *, x: str, y: str, hue: str, xlabel: str,
                       ylabel: str, ylim: tuple[float, float] | None = None) -> Path:
    """Bars of ``y`` per ``x`` category, one colour per ``hue``; the mean over rows (seeds) with a 95% CI."""
    width = max(5.0, 0.9 * data[x].nunique() * max(1, data[hue].nunique()) + 2)
    fig, ax = plt.subplots(figsize=(min(width, 16), 3.8))
    sns.barplot(data=data, x=x, y=y, hue=hue, ax=ax, errorbar=("ci", 95), capsize=0.1,
                order=sorted(data[x].unique(), key=natural_key), hue_order=sorted(data[hue].unique(), key=natural_key))
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(title=None, fontsize="small")
    return _save(fig, path)


def _integer_log_ticks(grid: sns.FacetGrid, values: pd.Series) -> None:
    """Label a log axis at the data's own x values (copies, probes: 1, 4, 16, ...) when there are few."""
    ticks = sorted(v for v in pd.unique(values.dropna()) if v > 0)
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    if 0 < len(ticks) <= 10 and all(float(t).is_integer() for t in ticks):
        for ax in grid.axes.flat:
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()


def _minor_log_label(value: float, _: object = None) -> str:
    """Label minor log ticks at 2× and 5× a power of ten only (``0.2``, ``50``), others blank."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def _panel_height(n_hue: int, row: str | None, data: pd.DataFrame) -> float:
    """Panel height in inches: tall enough that a long legend does not dwarf the panels."""
    rows = 1 if row is None else max(1, data[row].nunique())
    return float(min(6.0, max(3.2, 0.24 * n_hue / rows)))


def _order(data: pd.DataFrame, column: str | None) -> list | None:
    return None if column is None else sorted(data[column].dropna().unique(), key=natural_key)


def _titles(grid: sns.FacetGrid, col: str | None, row: str | None) -> None:
    if col and row:
        grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    elif col:
        grid.set_titles(col_template="{col_name}")
    elif row:
        grid.set_titles(row_template="{row_name}")


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` (folders made) and close it."""
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


__all__ = ["grouped_bar_figure", "heatmap_figure", "line_figure", "save_figure"]
