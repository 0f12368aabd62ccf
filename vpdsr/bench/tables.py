"""The report's tables, built once from report.json: report.md prints them as pipes, report.html as HTML.

A :class:`Table` is headers and printed cells, nothing format-specific: each renderer decides how a
status or a baseline row looks. The rows come from :data:`ROW_KINDS` in order (the backends, then the
baselines); a new kind of row (another family of results with the backend columns) is one more entry.

Example:
    >>> summary_table(report).headers
    ('backend', 'status', 'p50 ms', 'images/s', '% peak', 'PSNR vs ref dB', 'PIQE drift worst', 'PSNR vs HR dB')
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vpdsr.bench.baselines import text_cells
from vpdsr.bench.columns import SUMMARY, SUMMARY_TEXT, TEXT_HEADERS, Column, ColumnGroup, num, status_cell


@dataclass(frozen=True)
class Row:
    """One printed row.

    Attributes:
        cells: every cell as printed, text cells first.
        kind: which kind of row (backend, baseline, ...; the HTML page styles each).
        status: its status word (ok, skipped, failed, baseline): the HTML status cell's class.
        note: the reason, or what else to know about it (the HTML notes column; empty when none).
    """

    cells: tuple[str, ...]
    kind: str = "backend"
    status: str = "ok"
    note: str = ""


@dataclass(frozen=True)
class Table:
    """Headers and rows; the first `text` columns are text (left-aligned), the rest numbers.

    Attributes:
        status_column: the index of the status column, or None.
    """

    headers: tuple[str, ...]
    rows: tuple[Row, ...]
    text: int = 1
    status_column: int | None = None

    def markdown(self) -> list[str]:
        """The table as Markdown pipe rows (numbers right-aligned)."""
        lines = ["| " + " | ".join(self.headers) + " |",
                 "|" + "---|" * self.text + "---:|" * (len(self.headers) - self.text)]
        return lines + ["| " + " | ".join(r.cells) + " |" for r in self.rows]


@dataclass(frozen=True)
class RowKind:
    """Where the rows of one kind are in report.json, and how their text columns (TEXT_HEADERS) and note read."""

    name: str
    rows: Callable[[dict], list[dict]]
    text: Callable[[dict, dict], tuple[str, str, str, str]]
    note: Callable[[dict, dict], str]


def _backend_text(row: dict, report: dict) -> tuple[str, str, str, str]:
    return row["name"], row["precision"], row["device"], status_cell(row)


def _backend_note(row: dict, report: dict) -> str:
    note = row.get("reason") or ("reference" if row["name"] == report["reference"] else "")
    target = row.get("target") or row["name"]
    if not row["name"].startswith(target):  # a manifest entry named other than its target
        note = f"target {target}; {note}" if note else f"target {target}"
    if row.get("latency_change_pct") is not None:
        note = f"p50 {row['latency_change_pct']:+.1f}% vs baseline " + note
    return note.strip()


ROW_KINDS: tuple[RowKind, ...] = (
    RowKind("backend", lambda report: report["backends"], _backend_text, _backend_note),
    # what a user would ship instead: quality only, no latency
    RowKind("baseline", lambda report: report.get("baselines") or [], lambda row, report: text_cells(row),
            lambda row, report: row.get("reason") or ("the teacher's engine, timed" if row.get("latency_ms")
                                                      else "baseline (quality only)")),
)


def _rows(report: dict, kinds: tuple[str, ...] | None = None):
    for kind in ROW_KINDS:
        if kinds is None or kind.name in kinds:
            for row in kind.rows(report):
                yield kind, row


def _status(kind: RowKind, row: dict) -> str:
    return "baseline" if kind.name == "baseline" and row["status"] == "ok" else row["status"]


def summary_table(report: dict) -> Table:
    """One line per backend and baseline: backend, status, then :data:`SUMMARY`."""
    rows = []
    for kind, row in _rows(report):
        name, _, _, status = kind.text(row, report)
        rows.append(Row((name, status, *(c.cell(row) for c in SUMMARY)), kind.name, _status(kind, row),
                        kind.note(row, report)))
    return Table((*SUMMARY_TEXT, *(c.header for c in SUMMARY)), tuple(rows), text=len(SUMMARY_TEXT), status_column=1)


def group_table(report: dict, group: ColumnGroup) -> Table:
    """One topic's table: the text columns, then the group's columns, for the row kinds it shows."""
    return columns_table(report, group.columns, group.kinds)


def columns_table(report: dict, columns: tuple[Column, ...], kinds: tuple[str, ...] | None = None) -> Table:
    rows = tuple(Row((*kind.text(row, report), *(c.cell(row) for c in columns)), kind.name, _status(kind, row),
                     kind.note(row, report)) for kind, row in _rows(report, kinds))
    return Table((*TEXT_HEADERS, *(c.header for c in columns)), rows, text=len(TEXT_HEADERS), status_column=3)


def gates_table(report: dict) -> Table | None:
    """gate, backend, threshold, value, result, detail (None when no gate was set)."""
    if not report["gates"]:
        return None
    rows = []
    for g in report["gates"]:
        value = g["value"] if isinstance(g["value"], str) else num(g["value"], "{:.4g}")
        result = "pass" if g["passed"] else "FAIL"
        rows.append(Row((g["name"], g["backend"], num(g["threshold"], "{:g}"), value, result, g.get("detail", "")),
                        "gate", "pass" if g["passed"] else "fail"))
    return Table(("gate", "backend", "threshold", "value", "result", "detail"), tuple(rows), text=2, status_column=4)


def per_image_table(report: dict) -> Table | None:
    """Per image and measured backend: CLIPIQA / PSNR vs the reference's output."""
    from vpdsr.bench.columns import measured

    names = report.get("image_names") or []
    ok = [b for b in report["backends"] if measured(b) and b.get("quality")]
    if not names or not ok:
        return None
    rows = []
    for i, name in enumerate(names):
        cells = []
        for b in ok:
            r = b["quality"]["per_image"][i]
            psnr = r.get("psnr_vs_ref")
            cells.append(f"{num(r.get('clipiqa'), '{:.4f}')} / {'ref' if psnr is None else num(psnr)}")
        rows.append(Row((name, *cells), "image"))
    return Table(("image", *(f"{b['name']}: CLIPIQA / PSNR vs ref" for b in ok)), tuple(rows))
