"""The building blocks of a report section, and how report.md prints them (report.html: its template).

Text is Markdown inline (`code`, **bold**, [text](relative/path)): report.md takes it as it is, the
HTML page escapes it and turns those three into tags (:func:`vpdsr.bench.html.inline`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vpdsr.bench.tables import Table


@dataclass(frozen=True)
class Text:
    """A paragraph (Markdown inline)."""

    kind: ClassVar[str] = "text"
    text: str


@dataclass(frozen=True)
class Items:
    """A bullet list (each item Markdown inline)."""

    kind: ClassVar[str] = "items"
    items: tuple[str, ...]


@dataclass(frozen=True)
class TableBlock:
    """A table; `notes`: the HTML page adds each row's note as a last column."""

    kind: ClassVar[str] = "table"
    table: Table
    notes: bool = False


@dataclass(frozen=True)
class Figure:
    """A figure: inline SVG or a base64 PNG in the HTML page; in report.md a link to `file` beside it, if any."""

    kind: ClassVar[str] = "figure"
    alt: str
    svg: str | None = None
    png: str | None = None
    file: str | None = None
    missing: str = "no figure"  # said instead when there is nothing to show


@dataclass(frozen=True)
class Section:
    """A titled part of the report.

    Attributes:
        key: a short name (the HTML anchor).
        collapsed: the HTML page folds it away (`<details>`) under its title.
        html_only: figures and per-image detail that report.md leaves out.
    """

    key: str
    title: str
    blocks: tuple
    collapsed: bool = False
    html_only: bool = False


def markdown_blocks(blocks) -> list[str]:
    """Blocks as Markdown lines, each after an empty line (a Figure without a file beside the report: none)."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Text):
            lines += ["", block.text]
        elif isinstance(block, Items):
            lines += ["", *(f"- {item}" for item in block.items)]
        elif isinstance(block, TableBlock):
            lines += ["", *block.table.markdown()]
        elif isinstance(block, Figure):
            lines += ["", f"![{block.alt}]({block.file})"] if block.file else []
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    return lines
