"""The report as data: sections of figures, tables and notes, written out by ``html`` and ``markdown``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Figure:
    """A PNG file (path relative to the report folder) and its caption."""

    path: str
    caption: str


@dataclass
class Table:
    """A table to print as it is (index ignored) and its caption; ``bold`` cells (row position, column
    name) are emphasised (the best value of a column); ``name`` identifies the table in the HTML page."""

    frame: pd.DataFrame
    caption: str = ""
    bold: set[tuple[int, str]] = field(default_factory=set)
    name: str = ""


@dataclass
class Note:
    """A paragraph of plain text."""

    text: str


Block = Figure | Table | Note


@dataclass
class Section:
    """One titled part of the report."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """URL fragment derived from the title (``Final accuracy`` -> ``final-accuracy``)."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Document:
    """The whole report."""

    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)
