"""A report written as CSV or as an Excel workbook, and the HTTP answer that carries it.

CSV is for programs: one header line of keys, the values exactly as the JSON answer has
them. The workbook is for people: a first sheet saying what the report is (period, time
zone, filters), then the rows with headers in the reader's language, numbers stored as
numbers (money with two decimals, rates as percentages, times as durations), the header
row frozen, and one more sheet per team where the report has teams.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any, Literal

import xlsxwriter
from fastapi.responses import Response

from shared.kpis import kpi_name

from .labels import word
from .reports import Kind, Report, Row

Format = Literal["json", "csv", "xlsx"]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {}, XLSX_TYPE: {}},
        "description": "JSON; CSV with format=csv; an Excel workbook with format=xlsx",
    }
}

NUMBER_FORMATS: dict[Kind, str] = {
    Kind.integer: "#,##0",
    Kind.money: "#,##0.00",
    Kind.percent: "0.00%",
    Kind.number: "0.00",
    Kind.duration: "[h]:mm:ss",
    Kind.timestamp: "yyyy-mm-dd hh:mm",
    Kind.date: "yyyy-mm-dd",
}
_WIDTHS: dict[Kind, int] = {Kind.timestamp: 18, Kind.date: 12, Kind.money: 14}
_PAGE_HEADER_MAX = 240
# Excel's limits on a sheet's name.
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")
_SHEET_NAME_MAX = 31


def respond(report: Report, file_format: Format) -> Response:
    """The report as an attachment named after it."""
    if file_format == "xlsx":
        body, media_type = workbook_bytes(report), XLSX_TYPE
    else:
        body, media_type = csv_text(report).encode("utf-8"), CSV_TYPE
    filename = f"{re.sub(r'[^A-Za-z0-9._-]', '_', report.name)}.{file_format}"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ---------------------------------------------------------------------------------------------
# CSV


def csv_text(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in report.columns])
    for row in report.rows:
        writer.writerow([_csv_cell(c.value(row)) for c in report.columns])
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return str(value)


# ---------------------------------------------------------------------------------------------
# Excel


def workbook_bytes(report: Report) -> bytes:
    out = io.BytesIO()
    # Rows go to a temporary file as they are written (a 50 000-row answer takes a few MB of
    # memory, not hundreds), and text is always text: an id "=1+1" never becomes a formula.
    book = xlsxwriter.Workbook(
        out, {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
    )
    formats = _Formats(book)
    used: set[str] = set()
    _about_sheet(book.add_worksheet(_sheet_name(word("about", report.lang), used)), report, formats)
    all_rows = book.add_worksheet(_sheet_name(word("all", report.lang), used))
    _data_sheet(all_rows, report, report.rows, formats)
    if report.team is not None:
        teams: dict[str, list[Row]] = {}
        for row in report.rows:
            team = report.team(row)
            if team:
                teams.setdefault(team, []).append(row)
        for team in sorted(teams):
            sheet = book.add_worksheet(_sheet_name(team, used))
            _data_sheet(sheet, report, teams[team], formats)
    book.close()
    return out.getvalue()


class _Formats:
    """A workbook's cell formats, each made once."""

    def __init__(self, book: Any) -> None:
        self.title = book.add_format({"bold": True, "font_size": 14})
        self.label = book.add_format({"bold": True})
        self.header = book.add_format(
            {"bold": True, "bg_color": "#DDEBF7", "align": "center", "text_wrap": True}
        )
        self.centered = book.add_format({"align": "center"})
        self.kinds = {k: book.add_format({"num_format": f}) for k, f in NUMBER_FORMATS.items()}
        self.centered_kinds = {
            k: book.add_format({"num_format": f, "align": "center"})
            for k, f in NUMBER_FORMATS.items()
        }

    def of(self, kind: Kind, centered: bool) -> Any:
        if centered:
            return self.centered_kinds.get(kind, self.centered)
        return self.kinds.get(kind)


def _sheet_name(wanted: str, used: set[str]) -> str:
    """A name Excel accepts, unique in the workbook (compared as Excel does, ignoring case)."""
    base = _SHEET_NAME_BAD.sub("_", wanted).strip("'") or "_"
    name, n = base[:_SHEET_NAME_MAX], 1
    while name.lower() in {u.lower() for u in used}:
        n += 1
        suffix = f" ({n})"
        name = base[: _SHEET_NAME_MAX - len(suffix)] + suffix
    used.add(name)
    return name


def _about_sheet(sheet: Any, report: Report, formats: _Formats) -> None:
    _print_setup(sheet, report)
    sheet.set_column(0, 0, 18)
    sheet.set_column(1, 1, 60)
    sheet.write_string(0, 0, report.title, formats.title)
    for line, (label, value) in enumerate(report.about, 1):
        sheet.write_string(line, 0, label, formats.label)
        sheet.write_string(line, 1, value)


def _data_sheet(sheet: Any, report: Report, rows: Iterable[Row], formats: _Formats) -> None:
    sheet.freeze_panes(1, 0)
    _print_setup(sheet, report)
    sheet.repeat_rows(0)
    for position, column in enumerate(report.columns):
        kind = column.kind if isinstance(column.kind, Kind) else Kind.number
        width = max(_WIDTHS.get(kind, 12), _display_width(column.label) + 2)
        sheet.set_column(position, position, min(width, 40))
        sheet.write_string(0, position, column.label, formats.header)
    for line, row in enumerate(rows, 1):
        for position, column in enumerate(report.columns):
            kind = column.kind_of(row)
            value = cell_value(kind, column.value(row), report)
            if value is None:
                continue
            cell_format = formats.of(kind, column.centered)
            if isinstance(value, str):
                sheet.write_string(line, position, value, cell_format)
            elif isinstance(value, datetime | date | timedelta):
                sheet.write_datetime(line, position, value, cell_format)
            else:
                sheet.write_number(line, position, value, cell_format)


def _print_setup(sheet: Any, report: Report) -> None:
    """Printed (or saved as PDF): landscape, as wide as the page, and each page headed by
    what the report is, its period, zone and filters."""
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)
    facts = "   ".join(f"{label}: {value}" for label, value in report.about[1:])
    # A page header holds at most 255 characters, its codes included.
    text = f"{report.title}   {facts}".replace("&", "&&")[:_PAGE_HEADER_MAX]
    sheet.set_header(f"&L&9{text}")


def cell_value(kind: Kind, value: Any, report: Report) -> Any:
    """A JSON value as the workbook stores it; ``None`` is an empty cell."""
    if value is None:
        return None
    if kind is Kind.money:
        # Binary floating point, as every spreadsheet number; the shortest decimal that
        # reads back as this float is the answer's own.
        return float(value)
    if kind is Kind.duration:
        return timedelta(seconds=float(value))
    if kind is Kind.timestamp:
        # Excel has no time zones: the local time, the zone on the first sheet.
        return datetime.fromisoformat(value).replace(tzinfo=None)
    if kind is Kind.date:
        return date.fromisoformat(value)
    if kind is Kind.kpi:
        return kpi_name(value, report.lang)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    return value


def _display_width(text: str) -> int:
    """Columns a text takes: a CJK character is two."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
