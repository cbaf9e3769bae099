"""Paper-figure specs (``reports/paper/*.yaml``): loading and validation, and the suite per budget.

A spec names the suite to run for each budget (``quick``: 2 CPU cores, minutes; ``full``: the paper's
settings), what to draw, and the published numbers with their citation::

    name: xconv-table1
    title: ...
    citation: ...                      # the paper
    budgets:
      quick: {note: ..., suite: {defaults: {...}, grid: {...}, seeds: [0]}}
      full:  {note: ..., suite: {defaults: {...}, product: [[...], [...]]}}
    draw: [{kind: table, ...}, {kind: lines, ...}, {kind: bars, ...}, {kind: section, name: robustness}]
    # table: metric (a runs column, or ATTACK@ε such as fgsm@0.13), row (label pattern[s]), col (numeric
    #        key; derived fields such as training_sigma), col_format, where, unit (MiB), digits
    # lines: x, y (metric or list), hue (pattern[s]; default: the variant label without x), where,
    #        logx (default true), logy, metric_names; bars: x, hue (patterns), metric, ylim
    published: {citation: ..., rows: [...], cols: [...], values: [[...]]}   # or null
    limits: what the quick budget / our runner cannot reproduce
    transfer_surrogate: {estimator: bp}    # optional: the runs whose model crafts transfer attacks; with
                                           # seed_offset: n, an independently seeded twin (seed + n) does
    pretrained_from: {task: mnist-mlp, estimator: bp}   # optional: runs with init_from: pretrained start
                                                        # from the matching run's final weights (same seed)

``suite`` is in the runner's vocabulary (``suite.cli.suite_files``: defaults, grid, runs, estimators, tasks,
exclude, seeds) plus one extension, ``product``: a list of lists of partial configs whose Cartesian
product (merged dicts) is appended to ``runs`` — for settings that go in pairs, such as the paper's
epochs = 10 + 2·log2(B) per batch size.

Labels in ``draw`` are patterns over a run's config and metrics: ``"r={estimator_options.probes}"``;
a list of patterns takes the first one whose fields are all present (``["r={...probes}", "exact"]``).
Drawing: ``reports/paper_draw.py``; our numbers beside the published ones: ``reports/paper_tables.py``. No
torch here: running the suite is the job of ``suite/cli/commands/paper.py``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lrbench.reports.errors import ReportError

SPECS_DIR = Path(__file__).resolve().parent / "paper"
BUDGETS = ("quick", "full")
DRAW_KINDS = ("table", "lines", "bars", "section")
FIELD_PATTERN = re.compile(r"\{([^{}]+)\}")
MIB = 2.0**20
OURS_COLUMNS = ["row", "col", "x", "mean", "ci95", "n", "variants"]


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
    pretrained_from: dict[str, Any] | None = None
    path: Path | None = field(default=None, repr=False)

    def suite(self, budget: str) -> dict[str, Any]:
        """The suite mapping of ``budget`` for ``suite.cli.suite_files.expand_suite`` (``product`` expanded)."""
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


def list_specs() -> list[PaperSpec]:
    """Every spec shipped in ``reports/paper/``, sorted by name."""
    return [load_spec(path) for path in sorted(SPECS_DIR.glob("*.yaml"))]


def spec_names() -> list[str]:
    """Names of the shipped specs (file stems of ``reports/paper/*.yaml``)."""
    return sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))


def load_spec(name_or_path: str | Path) -> PaperSpec:
    """Load a spec by name (``xconv-table1``) or path; malformed or unknown -> :class:`ReportError`."""
    path = Path(name_or_path)
    if not path.is_file():
        path = SPECS_DIR / f"{name_or_path}.yaml"
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
                     transfer_surrogate=data.get("transfer_surrogate"),
                     pretrained_from=data.get("pretrained_from"), path=path)


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
