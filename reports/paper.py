"""Paper-figure specs (``reports/paper/*.yaml``): loading, the suite per budget, and drawing.

A spec names the suite to run for each budget (``quick``: 2 CPU cores, minutes; ``full``: the paper's
settings), what to draw, and the published numbers with their citation::

    name: xconv-table1
    title: ...
    citation: ...                      # the paper
    budgets:
      quick: {note: ..., suite: {defaults: {...}, grid: {...}, seeds: [0]}}
      full:  {note: ..., suite: {defaults: {...}, product: [[...], [...]]}}
    draw: [{kind: table, ...}, {kind: lines, ...}, {kind: bars, ...}, {kind: section, name: robustness}]
    # table: metric, row (label pattern[s]), col (numeric key), col_format, where, unit (MiB), digits
    # lines: x, y (metric or list), hue (pattern[s]; default: the variant label without x), where,
    #        logx (default true), logy, metric_names; bars: x, hue (patterns), metric, ylim
    published: {citation: ..., rows: [...], cols: [...], values: [[...]]}   # or null
    limits: what the quick budget / our runner cannot reproduce
    transfer_surrogate: {estimator: bp}    # optional: the runs whose model crafts transfer attacks

``suite`` is in the runner's vocabulary (``suite.config``: defaults, grid, runs, estimators, tasks,
exclude, seeds) plus one extension, ``product``: a list of lists of partial configs whose Cartesian
product (merged dicts) is appended to ``runs`` — for settings that go in pairs, such as the paper's
epochs = 10 + 2·log2(B) per batch size.

Labels in ``draw`` are patterns over a run's config and metrics: ``"r={estimator_options.probes}"``;
a list of patterns takes the first one whose fields are all present (``["r={...probes}", "exact"]``).
This module never imports torch: running the suite is the job of ``suite/commands/paper.py``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import plots, sections
from .document import Figure, Note, Section, Table
from .errors import ReportError
from .load import Results, natural_key, variant_labels
from .stats import mean_ci, sort_naturally

SPECS_DIR = Path(__file__).resolve().parent / "paper"
BUDGETS = ("quick", "full")
DRAW_KINDS = ("table", "lines", "bars", "section")
_FIELD = re.compile(r"\{([^{}]+)\}")
_MIB = 2.0**20
_OURS_COLUMNS = ["row", "col", "x", "mean", "ci95", "n", "variants"]


@dataclass
class PaperSpec:
    """One paper figure/table: what to run per budget, what to draw, what the paper published."""

    name: str
    title: str
    citation: str
    description: str
    budgets: dict[str, dict[str, Any]]
    draw: list[dict[str, Any]]
    published: dict[str, Any] | None = None
    limits: str = ""
    transfer_surrogate: dict[str, Any] | None = None
    path: Path | None = field(default=None, repr=False)

    def suite(self, budget: str) -> dict[str, Any]:
        """The suite mapping of ``budget`` for ``suite.config.expand_suite`` (``product`` expanded)."""
        if budget not in self.budgets:
            raise ReportError(f"paper '{self.name}' has no budget '{budget}'; budgets: {', '.join(self.budgets)}")
        suite = dict(self.budgets[budget]["suite"])
        product = suite.pop("product", None)
        if product:
            runs = list(suite.get("runs") or [])
            for combo in itertools.product(*product):
                merged: dict[str, Any] = {}
                for part in combo:
                    merged.update(part)
                runs.append(merged)
            suite["runs"] = runs
        suite.setdefault("description", f"paper {self.name} ({budget} budget)")
        return suite

    def note(self, budget: str) -> str:
        """The budget's note (what it runs, how it departs from the paper); empty when absent."""
        return str(self.budgets.get(budget, {}).get("note", "")).strip()


#: Paper specs added by plugins (``register_paper``): name -> YAML file.
REGISTERED_SPECS: dict[str, Path] = {}


def _spec_paths() -> dict[str, Path]:
    """Name -> file of every known spec: the shipped ``reports/paper/*.yaml`` and the registered ones."""
    return {**{p.stem: p for p in SPECS_DIR.glob("*.yaml")}, **REGISTERED_SPECS}


def register_paper(path: str | Path) -> PaperSpec:
    """Add a paper spec file from outside lrbench (a plugin's); it is validated now. A name already taken
    or a malformed file -> :class:`ReportError` (one line). Returns the loaded spec."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"paper spec file {path} does not exist")
    spec = load_spec(path)
    taken = _spec_paths().get(spec.name)
    if taken is not None and taken.resolve() != path.resolve():
        raise ReportError(f"paper name '{spec.name}' of {path} is already taken by {taken}; rename it")
    REGISTERED_SPECS[spec.name] = path
    return spec


def list_specs() -> list[PaperSpec]:
    """Every spec (shipped in ``reports/paper/`` or registered by a plugin), sorted by name."""
    return [load_spec(path) for _, path in sorted(_spec_paths().items())]


def spec_names() -> list[str]:
    """Names of the known specs (file stems of ``reports/paper/*.yaml``, plus registered ones)."""
    return sorted(_spec_paths())


def load_spec(name_or_path: str | Path) -> PaperSpec:
    """Load a spec by name (``xconv-table1``) or path; malformed or unknown -> :class:`ReportError`."""
    path = Path(name_or_path)
    if not path.is_file():
        path = _spec_paths().get(str(name_or_path), SPECS_DIR / f"{name_or_path}.yaml")
    if not path.is_file():
        raise ReportError(f"unknown paper '{name_or_path}'; valid papers: {', '.join(spec_names())}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ReportError(f"malformed paper spec {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ReportError(f"paper spec {path} must be a YAML mapping")
    missing = [k for k in ("name", "title", "citation", "budgets", "draw") if k not in data]
    if missing:
        raise ReportError(f"paper spec {path} lacks {', '.join(missing)}")
    budgets = data["budgets"]
    if not isinstance(budgets, dict) or any(b not in BUDGETS for b in budgets) or not budgets:
        raise ReportError(f"paper spec {path}: 'budgets' must map {' / '.join(BUDGETS)} to {{note, suite}}")
    for budget, entry in budgets.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("suite"), dict):
            raise ReportError(f"paper spec {path}: budget '{budget}' needs a 'suite' mapping")
    draw = data["draw"]
    if not isinstance(draw, list) or not draw or any(
            not isinstance(d, dict) or d.get("kind") not in DRAW_KINDS for d in draw):
        raise ReportError(f"paper spec {path}: 'draw' must be a list of items with kind in {', '.join(DRAW_KINDS)}")
    _check_published(data.get("published"), path)
    return PaperSpec(name=str(data["name"]), title=str(data["title"]), citation=str(data["citation"]).strip(),
                     description=str(data.get("description", "")).strip(), budgets=budgets, draw=draw,
                     published=data.get("published"), limits=str(data.get("limits", "")).strip(),
                     transfer_surrogate=data.get("transfer_surrogate"), path=path)


def _check_published(published: Any, path: Path) -> None:
    """A published table is ``{citation, rows, cols, values}`` with one row of len(cols) per row name."""
    if published is None:
        return
    if not isinstance(published, dict) or "citation" not in published:
        raise ReportError(f"paper spec {path}: 'published' must be null or a mapping with a 'citation'")
    if "values" in published:
        rows, cols, values = published.get("rows") or [], published.get("cols") or [], published["values"]
        if len(values) != len(rows) or any(len(v) != len(cols) for v in values):
            raise ReportError(f"paper spec {path}: published 'values' must be {len(rows)} rows of {len(cols)} numbers")


# --------------------------------------------------------------------------- run fields and labels
def column_for(key: str) -> str:
    """Config/metric key of a spec -> column of ``Results.runs`` (``estimator_options.probes`` ->
    ``cfg:opt.probes``; metrics and the numeric axes ``copies``/``probes``/``batch_size``/``depth`` as is)."""
    if key.startswith("estimator_options."):
        return "cfg:opt." + key.split(".", 1)[1]
    if key.startswith("model_options."):
        return "cfg:model." + key.split(".", 1)[1]
    return key


def field_value(row: pd.Series, key: str) -> Any:
    """Value of ``key`` in a runs row (config keys under their ``cfg:`` column when not a column themselves)."""
    for column in (column_for(key), f"cfg:{key}"):
        if column in row.index:
            value = row[column]
            return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return None


def format_label(row: pd.Series, patterns: str | list[str]) -> str | None:
    """First pattern of ``patterns`` whose ``{fields}`` all exist in ``row``, filled in (None if none)."""
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        values = {}
        for key in _FIELD.findall(pattern):
            value = field_value(row, key)
            if value is None:
                break
            values[key] = f"{int(value)}" if isinstance(value, float) and value.is_integer() else str(value)
        else:
            return _FIELD.sub(lambda m, filled=values: filled[m.group(1)], pattern)
    return None


def select_runs(results: Results, where: dict[str, Any] | None, completed: bool = True) -> pd.DataFrame:
    """Runs matching ``where`` ({key: value or [values]}): the completed ones, or (``completed=False``)
    the failed and diverged ones."""
    runs = results.completed if completed else results.unfinished
    for key, wanted in (where or {}).items():
        accepted = {str(w) for w in (wanted if isinstance(wanted, list) else [wanted])}
        runs = runs[[_as_text(field_value(row, key)) in accepted for _, row in runs.iterrows()]]
    return runs


def _as_text(value: Any) -> str:
    """Text of a field for matching: whole floats as integers (``128.0`` matches ``128``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- drawing
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


def _metric_values(runs: pd.DataFrame, item: dict[str, Any]) -> pd.Series:
    values = runs[item["metric"]].astype(float)
    return values / _MIB if item.get("unit") == "MiB" else values


def table_runs(item: dict[str, Any], results: Results) -> pd.DataFrame:
    """One row per completed run of a ``table`` item: ``row, col, x, value, variant``."""
    runs = select_runs(results, item.get("where"))
    if runs.empty:
        return pd.DataFrame(columns=["row", "col", "x", "value", "variant"])
    frame = pd.DataFrame({"row": runs.apply(lambda r: format_label(r, item["row"]), axis=1),
                          "x": runs.apply(lambda r: field_value(r, item["col"]), axis=1),
                          "value": _metric_values(runs, item), "variant": runs["variant"]}).dropna()
    frame["x"] = frame["x"].astype(float)
    frame["col"] = frame["x"].map(lambda x: _col_label(item, x))
    return frame[["row", "col", "x", "value", "variant"]]


def ours_table(spec: PaperSpec, item: dict[str, Any], results: Results) -> pd.DataFrame:
    """Long frame ``row, col, x, mean, ci95, n, variants`` of our runs for a ``table`` item (``variants``:
    distinct configurations pooled in the cell — more than one means the folder mixes settings)."""
    rows = []
    for (row, col, x), group in table_runs(item, results).groupby(["row", "col", "x"]):
        mean, half, n = mean_ci(group["value"].tolist())
        rows.append({"row": row, "col": col, "x": x, "mean": mean, "ci95": half, "n": n,
                     "variants": group["variant"].nunique()})
    return pd.DataFrame(rows, columns=_OURS_COLUMNS)


def published_table(spec: PaperSpec, item: dict[str, Any]) -> pd.DataFrame:
    """Long frame ``row, col, x, value`` of the published numbers (empty when the paper gives none)."""
    pub = spec.published if item.get("published", True) else None
    if not pub or "values" not in pub:
        return pd.DataFrame(columns=["row", "col", "x", "value"])
    rows = []
    for row, values in zip(pub["rows"], pub["values"], strict=True):
        for x, value in zip(pub["cols"], values, strict=True):
            rows.append({"row": str(row), "col": _col_label(item, x), "x": float(x), "value": float(value)})
    return pd.DataFrame(rows)


def compare(ours: pd.DataFrame, published: pd.DataFrame) -> dict[str, Any]:
    """Numbers that say how our table compares with the published one on their common cells."""
    both = ours.merge(published, on=["row", "col", "x"], how="inner")
    if both.empty:
        return {"cells": 0}
    diff = both["mean"] - both["value"]
    out: dict[str, Any] = {"cells": len(both), "mean_diff": float(diff.mean()),
                           "max_abs_diff": float(diff.abs().max()),
                           "worst_cell": f"{both.loc[diff.abs().idxmax(), 'row']}, {both.loc[diff.abs().idxmax(), 'col']}"}
    if len(both) >= 3 and both["mean"].nunique() > 1 and both["value"].nunique() > 1:
        out["spearman"] = float(both["mean"].rank().corr(both["value"].rank()))
    # Row order: does the ranking of rows (averaged over the common columns) agree with the paper's?
    by_row = both.groupby("row")[["mean", "value"]].mean()
    out["row_order_ours"] = list(by_row["mean"].sort_values(ascending=False).index)
    out["row_order_published"] = list(by_row["value"].sort_values(ascending=False).index)
    return out


def _col_label(item: dict[str, Any], x: Any) -> str:
    x = float(x)
    text = f"{int(x)}" if x.is_integer() else f"{x:g}"
    return item.get("col_format", "{}").format(text)


def _pivot(frame: pd.DataFrame, value: str, row_order: list[str]) -> pd.DataFrame:
    table = frame.pivot(index="row", columns="col", values=value)
    cols = sorted(table.columns, key=natural_key)
    rows = [r for r in row_order if r in table.index] + sorted(
        (r for r in table.index if r not in row_order), key=natural_key)
    table = table.loc[rows, cols]
    table.index.name = None
    return table.reset_index().rename(columns={"index": ""})


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
    blocks: list = [Table(_pivot(ours, "text", order), f"Ours — {title} ({spread})."), *warning]
    if not published.empty:
        blocks.append(Table(_pivot(published.assign(text=published["value"].map(lambda v: f"{v:.{digits}f}")),
                                   "text", order), f"Published — {title}. Source: {spec.published['citation']}"))
        both = ours.merge(published, on=["row", "col", "x"])
        if not both.empty:
            both["text"] = (both["mean"] - both["value"]).map(lambda d: f"{d:+.{digits}f}")
            blocks.append(Table(_pivot(both, "text", order), "Ours − published, on the cells both have."))
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
        runs["_x"] = runs["_x"].astype(float) / _MIB
        x = "peak memory (MiB)"
    hue = item.get("hue")
    labels = (runs.apply(lambda r: format_label(r, hue), axis=1) if hue
              else variant_labels(runs, exclude=[x.split(".")[-1]]))
    runs = runs.assign(series=labels)
    names = item.get("metric_names", {})
    long = runs.melt(id_vars=["task", "series", "seed", "_x"], value_vars=metrics, var_name="metric",
                     value_name="value").dropna(subset=["value"])
    long.loc[long["metric"] == "peak_memory_bytes", "value"] /= _MIB
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
                       value=_metric_values(runs, item)).dropna(subset=["group", "series", "value"])
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


__all__ = ["BUDGETS", "PaperSpec", "compare", "draw_paper", "list_specs", "load_spec",
           "paper_section_builder", "published_table"]
