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
                lines += [markdown_table(block.frame, block.bold), ""]
            elif isinstance(block, Note):
                lines += [block.text, ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def markdown_table(frame: pd.DataFrame, bold: set[tuple[int, str]] | frozenset = frozenset()) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (index ignored, ``|`` escaped, ``bold`` cells in **)."""
    def cell(value: object, strong: bool = False) -> str:
        text = format_cell(value).replace("|", "\\|").replace("\n", " ")
        return f"**{text}**" if strong else text

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    columns = list(frame.columns)
    rows = ["| " + " | ".join(cell(v, (i, c) in bold) for c, v in zip(columns, row, strict=True)) + " |"
            for i, row in enumerate(frame.itertuples(index=False))]
    return "\n".join([header, rule, *rows])
