"""Rows of an Excel workbook (``.xlsx``) as the importer reads a CSV file's: the first sheet,
its first row the headers, every cell as text.

A cell's text is what a CSV export of the sheet would hold, so that one mapping file reads
both: whole numbers without a decimal point, times as ``YYYY-MM-DD HH:MM:SS``, an empty cell
as an empty string.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

EXCEL_SUFFIXES = frozenset({".xlsx", ".xlsm"})


def is_workbook(path: Path) -> bool:
    return path.suffix.lower() in EXCEL_SUFFIXES


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds" if not value.microsecond else "auto")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value.total_seconds())
    return str(value)


def _rows(path: Path) -> Iterator[tuple[str, ...]]:
    """The first sheet's non-empty rows as text."""
    book = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            texts = tuple(cell_text(v) for v in values)
            if any(texts):
                yield texts
    finally:
        book.close()


def workbook_rows(path: Path) -> Iterator[dict[str, str]]:
    """Each row under the header row, keyed by header (a cell past the last is empty)."""
    rows = _rows(path)
    header = next(rows, ())
    for texts in rows:
        padded = texts + ("",) * (len(header) - len(texts))
        yield {name: padded[i] for i, name in enumerate(header) if name}


def workbook_row_count(path: Path) -> int:
    return max(sum(1 for _ in _rows(path)) - 1, 0)
