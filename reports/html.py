"""Write a :class:`Document` as one self-contained HTML page (figures referenced as files beside it)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from .document import Document, Figure, Note, Section, Table
from .stats import sig3

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } .subtitle { color: #666; margin-top: 0; }
nav ul { columns: 2; } section { margin-top: 2.5rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .caption { color: #555; font-size: 0.92rem; }
.table-wrap { overflow-x: auto; margin: 0.6rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f3f5f8; } tr:nth-child(even) td { background: #fafafa; }
"""


def write_html(document: Document, path: Path) -> Path:
    """Render ``document`` to ``path`` (UTF-8); image paths stay relative so the page opens from disk."""
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in document.sections)
    body = "\n".join(_section(s) for s in document.sections)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(document.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(document.title)}</h1>\n<p class=\"subtitle\">{html.escape(document.subtitle)}</p>\n"
            f"<nav><ul>{toc}</ul></nav>\n{body}\n</body>\n</html>\n")
    path.write_text(page, encoding="utf-8")
    return path


def _section(section: Section) -> str:
    parts = [f'<section id="{section.anchor}">', f"<h2>{html.escape(section.title)}</h2>"]
    for block in section.blocks:
        if isinstance(block, Figure):
            parts.append(f'<figure><img src="{html.escape(block.path)}" alt="{html.escape(block.caption)}">'
                         f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Note):
            parts.append(f"<p>{html.escape(block.text)}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
    columns = list(table.frame.columns)

    def cell(i: int, column: str, value: object) -> str:
        text = html.escape(format_cell(value))
        return f"<td><strong>{text}</strong></td>" if (i, column) in table.bold else f"<td>{text}</td>"

    rows = "".join("<tr>" + "".join(cell(i, c, v) for c, v in zip(columns, row, strict=True)) + "</tr>"
                   for i, row in enumerate(table.frame.itertuples(index=False)))
    caption = f'<p class="caption">{html.escape(table.caption)}</p>' if table.caption else ""
    name = f' data-table="{html.escape(table.name)}"' if table.name else ""
    return (f'{caption}<div class="table-wrap"><table{name}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
            "</table></div>")


def format_cell(value: object) -> str:
    """Cell text: floats at 3 significant figures (``stats.sig3``), NaN/None as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return sig3(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)
