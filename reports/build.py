"""Build a report folder: ``index.html``, ``report.md``, ``figures/*.png`` and ``results.csv``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from .document import Document, Section
from .html import write_html
from .load import Results, load_results
from .markdown import write_markdown
from .sections import DEFAULT_SECTIONS, SectionBuilder


def build_report(results_dir: str | Path, out_dir: str | Path | None = None, *,
                 title: str = "lrbench report", builders: Sequence[SectionBuilder] = DEFAULT_SECTIONS,
                 results: Results | None = None) -> Path:
    """Write the report of ``results_dir`` into ``out_dir`` (default ``results_dir/report``).

    Each builder draws one section or returns None when its data are absent; a caller may put its own
    first (the paper command puts the paper figure with the published numbers first). Returns the path of ``index.html``. Raises :class:`ReportError` when there is
    nothing to report.
    """
    results = results if results is not None else load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for stale in figures.glob("*.png"):  # a rebuilt report shows only this build's figures
        stale.unlink()
    sections: list[Section] = []
    for builder in builders:
        section = builder(results, figures)
        if section is not None:
            sections.append(section)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = Document(title, f"{len(results.runs)} runs from {Path(results_dir).resolve()} · built {stamp}",
                        sections)
    results.tidy().to_csv(out / "results.csv", index=False)
    write_markdown(document, out / "report.md")
    return write_html(document, out / "index.html")
