"""Drawing a paper spec: the section with the paper's table or figure first (table, lines, bars, or a
default report section), our numbers beside the published ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from . import plots, sections
from .document import Figure, Note, Section, Table
from .errors import ReportError
from .load import Results, variant_labels
from .paper_spec import MIB, PaperSpec
from .paper_tables import (
    compare,
    field_value,
    format_label,
    metric_values,
    ours_table,
    pivot,
    published_table,
    select_runs,
    table_runs,
)
from .stats import mean_ci, sort_naturally


def paper_section_builder(spec: PaperSpec, budget: str | None) -> Callable[[Results, Path], Section]:
    """A report section builder (``sections.SectionBuilder``) drawing ``spec`` from the loaded results."""

    def build(results: Results, figures: Path) -> Section:
        return draw_paper(spec, results, figures, budget)

    return build


def draw_paper(spec: PaperSpec, results: Results, figures: Path, budget: str | None = None) -> Section:
    """The paper section: description, each ``draw`` item, the published numbers beside ours, limits."""
    blocks: list = [Note(f"Paper: {spec.citation}")]
    if spec.description:
        blocks.append(Note(spec.description))
    if budget:
        blocks.append(Note(f"Budget '{budget}': {spec.note(budget)}"))
    for index, item in enumerate(spec.draw):
        drawer = {"table": _draw_table, "lines": _draw_lines, "bars": _draw_bars, "section": _draw_section}[item["kind"]]
        blocks.extend(drawer(spec, item, results, figures, f"paper_{spec.name}_{index}"))
    if spec.published is None:
        blocks.append(Note("Published numbers: none drawn — our transcription of the paper "
                           "(docs/ESTIMATORS.md) gives no numbers for this result, so only our measurements "
                           "are shown."))
    if spec.limits:
        blocks.append(Note(f"Limits: {spec.limits}"))
    return Section(f"Paper: {spec.title}", blocks)


def _draw_table(spec: PaperSpec, item: dict[str, Any], results: Results, figures: Path, stem: str) -> list:
    ours = ours_table(spec, item, results)
    published = published_table(spec, item)
    title = item.get("title", item["metric"])
    digits = int(item.get("digits", 4))
    missing = select_runs(results, item.get("where"), completed=False)
    warning = ([Note(f"{len(missing)} run(s) of this table did not complete ({', '.join(missing['run_id'])}); "
                     "their cells are empty — see 'Failed and diverged runs'.")] if len(missing) else [])
    mixed = ours[ours["variants"] > 1]
    if len(mixed):
        warning.append(Note(f"Warning: {len(mixed)} cell(s) pool runs of different configurations (e.g. "
                            f"{mixed.iloc[0]['row']}, {mixed.iloc[0]['col']}: {int(mixed.iloc[0]['variants'])} "
                            "configs) — results from different settings or code versions share this folder; "
                            "their means mix them."))
    if ours.empty:
        return [Note(f"{title}: no completed run matches this table yet."), *warning]
    order = [str(r) for r in (spec.published or {}).get("rows", [])]
    ours["text"] = [_cell(m, h, n, digits) for m, h, n in zip(ours["mean"], ours["ci95"], ours["n"], strict=True)]
    spread = ("one seed per cell, so no interval" if (ours["n"] <= 1).all()
              else "mean ± 95% t-interval over seeds; a cell without ± has one seed")
    blocks: list = [Table(pivot(ours, "text", order), f"Ours — {title} ({spread})."), *warning]
    if not published.empty:
        blocks.append(Table(pivot(published.assign(text=published["value"].map(lambda v: f"{v:.{digits}f}")),
                                   "text", order), f"Published — {title}. Source: {spec.published['citation']}"))
        both = ours.merge(published, on=["row", "col", "x"])
        if not both.empty:
            both["text"] = (both["mean"] - both["value"]).map(lambda d: f"{d:+.{digits}f}")
            blocks.append(Table(pivot(both, "text", order), "Ours − published, on the cells both have."))
        stats = compare(ours, published)
        blocks.append(Note(_comparison_text(stats)))
    per_run = table_runs(item, results)  # per seed, so the figure shows a 95% band over seeds
    long = pd.concat([per_run.assign(source="ours"), published.assign(source="published")], ignore_index=True)
    long = long.rename(columns={"row": item.get("row_name", "series")})
    path = plots.line_figure(long, figures / f"{stem}.png", x="x", y="value", hue=item.get("row_name", "series"),
                             col="source" if not published.empty else None, logx=True, sharex=True,
                             xlabel=item.get("col_name", item["col"]), ylabel=item.get("ylabel", title))
    blocks.insert(0, Figure(f"{figures.name}/{path.name}", f"{title}: ours (mean over seeds, band = 95% CI)" +
                            (" beside the published numbers (right)." if not published.empty else ".")))
    return blocks


def _cell(mean: float, half: float, n: int, digits: int) -> str:
    if n <= 1 or half != half:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def _comparison_text(stats: dict[str, Any]) -> str:
    if not stats.get("cells"):
        return "Ours and the published table share no cell."
    text = (f"Comparison on {stats['cells']} common cells: ours − published = {stats['mean_diff']:+.4f} on "
            f"average, largest gap {stats['max_abs_diff']:.4f} (at {stats['worst_cell']}).")
    if "spearman" in stats:
        text += f" Rank correlation of the cells (Spearman): {stats['spearman']:.2f}."
    text += (f" Row order by mean over the common columns — ours: {' > '.join(stats['row_order_ours'])}; "
             f"published: {' > '.join(stats['row_order_published'])}.")
    return text


def _draw_lines(spec: PaperSpec, item: dict[str, Any], results: Results, figures: Path, stem: str) -> list:
    runs = select_runs(results, item.get("where"))
    x = item["x"]
    metrics = item["y"] if isinstance(item["y"], list) else [item["y"]]
    if runs.empty:
        return [Note(f"{item.get('title', stem)}: no completed run matches yet.")]
    runs = runs.assign(_x=runs.apply(lambda r: field_value(r, x), axis=1)).dropna(subset=["_x"])
    if x == "peak_memory_bytes":
        runs["_x"] = runs["_x"].astype(float) / MIB
        x = "peak memory (MiB)"
    hue = item.get("hue")
    labels = (runs.apply(lambda r: format_label(r, hue), axis=1) if hue
              else variant_labels(runs, exclude=[x.split(".")[-1]]))
    runs = runs.assign(series=labels)
    names = item.get("metric_names", {})
    long = runs.melt(id_vars=["task", "series", "seed", "_x"], value_vars=metrics, var_name="metric",
                     value_name="value").dropna(subset=["value"])
    long.loc[long["metric"] == "peak_memory_bytes", "value"] /= MIB
    long["metric"] = long["metric"].map(lambda m: names.get(m, "peak memory (MiB)" if m == "peak_memory_bytes" else m))
    if long.empty:
        return [Note(f"{item.get('title', stem)}: the matching runs have no {', '.join(metrics)}.")]
    multi_task = long["task"].nunique() > 1
    ylabel = item.get("ylabel", long["metric"].iloc[0] if len(metrics) == 1 else "")
    path = plots.line_figure(long, figures / f"{stem}.png", x="_x", y="value", hue="series",
                             col="task" if multi_task else ("metric" if len(metrics) > 1 else None),
                             row="metric" if multi_task and len(metrics) > 1 else None,
                             logx=bool(item.get("logx", True)), logy=bool(item.get("logy", False)), sharey=False,
                             xlabel=item.get("xlabel", x), ylabel=ylabel)
    table = long.groupby(["task", "metric", "series", "_x"])["value"].agg(["mean", "count"]).reset_index()
    table = sort_naturally(table, ["task", "metric", "series", "_x"]).rename(columns={"_x": x, "count": "seeds"})
    return [Figure(f"{figures.name}/{path.name}", item.get("title", stem)),
            Table(table, f"{item.get('title', stem)}: the numbers (mean over seeds).")]


def _draw_bars(spec: PaperSpec, item: dict[str, Any], results: Results, figures: Path, stem: str) -> list:
    runs = select_runs(results, item.get("where"))
    if runs.empty:
        return [Note(f"{item.get('title', stem)}: no completed run matches yet.")]
    data = runs.assign(group=runs.apply(lambda r: format_label(r, item["x"]), axis=1),
                       series=runs.apply(lambda r: format_label(r, item["hue"]), axis=1),
                       value=metric_values(runs, item, results)).dropna(subset=["group", "series", "value"])
    path = plots.grouped_bar_figure(data, figures / f"{stem}.png", x="group", y="value", hue="series",
                                    xlabel=item.get("xlabel", ""), ylabel=item.get("ylabel", item["metric"]),
                                    ylim=tuple(item["ylim"]) if "ylim" in item else None)
    rows = []
    for (group, series), part in data.groupby(["group", "series"]):
        mean, half, n = mean_ci(part["value"].tolist())
        rows.append({"": group, "series": series, "mean": mean, "95% CI ±": half, "seeds": n})
    return [Figure(f"{figures.name}/{path.name}", item.get("title", stem)),
            Table(pd.DataFrame(rows), f"{item.get('title', stem)} (mean over seeds, 95% t-interval).")]


def _draw_section(spec: PaperSpec, item: dict[str, Any], results: Results, figures: Path, stem: str) -> list:
    builder = getattr(sections, item["name"], None)
    if builder is None or item["name"] not in {b.__name__ for b in sections.DEFAULT_SECTIONS}:
        raise ReportError(f"paper spec {spec.name}: unknown section '{item['name']}'; sections: "
                          + ", ".join(b.__name__ for b in sections.DEFAULT_SECTIONS))
    section = builder(results, figures)
    if section is None:
        return [Note(f"{item['name'].replace('_', ' ')}: the runs hold no data for it yet.")]
    return section.blocks


