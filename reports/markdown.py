"""Write a :class:`Document` as Markdown (GitHub tables, images referenced by relative path)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .document import Document, Figure, Note, Table
from .html import format_cell


def write_markdown(document: Document, path: Path) -> Path:
    """Render ``document`` to ``path`` (UTF-8)."""
    lines = [f"# {document.title}", "", f"_{document.subtitle}_", ""]
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Figure):
                lines += [f"![{block.caption}]({block.path})", "", f"*{block.caption}*", ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [block.caption, ""]
                lines += [markdown_table(block.frame), ""]
            elif isinstance(block, Note):
                lines += [block.text, ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (index ignored, ``|`` escaped)."""
    def cell(value: object) -> str:
        return format_cell(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
