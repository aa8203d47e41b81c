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
from decimal import Decimal
from typing import Any, Literal, cast

from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet

from shared.kpis import kpi_name

from .labels import word
from .reports import Column, Kind, Report, Row

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
_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", start_color="DDEBF7")
_CENTERED = Alignment(horizontal="center")
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
    # Write-only mode streams rows to the file: a 50 000-row answer stays small in memory.
    book = Workbook(write_only=True)
    _about_sheet(book.create_sheet(_sheet_name(word("about", report.lang), set())), report)
    used = {word("about", report.lang)}
    all_name = _sheet_name(word("all", report.lang), used)
    _data_sheet(book.create_sheet(all_name), report, report.rows)
    if report.team is not None:
        teams: dict[str, list[Row]] = {}
        for row in report.rows:
            team = report.team(row)
            if team:
                teams.setdefault(team, []).append(row)
        for team in sorted(teams):
            _data_sheet(book.create_sheet(_sheet_name(team, used)), report, teams[team])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


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


def _about_sheet(sheet: WriteOnlyWorksheet, report: Report) -> None:
    _print_setup(sheet, report)
    widths = _dimensions(sheet)
    widths["A"].width = 18
    widths["B"].width = 60
    title = WriteOnlyCell(sheet, value=report.title)
    title.font = Font(bold=True, size=14)
    sheet.append([title])
    for label, value in report.about:
        cell = WriteOnlyCell(sheet, value=label)
        cell.font = _HEADER_FONT
        sheet.append([cell, value])


def _data_sheet(sheet: WriteOnlyWorksheet, report: Report, rows: Iterable[Row]) -> None:
    sheet.freeze_panes = "A2"
    _print_setup(sheet, report)
    cast(Worksheet, sheet).print_title_rows = "1:1"
    for position, column in enumerate(report.columns, 1):
        kind = column.kind if isinstance(column.kind, Kind) else Kind.number
        width = max(_WIDTHS.get(kind, 12), _display_width(column.label) + 2)
        _dimensions(sheet)[get_column_letter(position)].width = min(width, 40)
    header = []
    for column in report.columns:
        cell = WriteOnlyCell(sheet, value=column.label)
        cell.font = _HEADER_FONT
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(horizontal="center", wrap_text=True)
        header.append(cell)
    sheet.append(header)
    for row in rows:
        sheet.append([_cell(sheet, column, row, report) for column in report.columns])


def _print_setup(sheet: WriteOnlyWorksheet, report: Report) -> None:
    """Printed (or saved as PDF): landscape, as wide as the page, and each page headed by
    what the report is, its period, zone and filters."""
    printed = cast(Worksheet, sheet)
    printed.page_setup.orientation = "landscape"
    printed.page_setup.fitToWidth = 1
    printed.page_setup.fitToHeight = 0
    printed.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    facts = "   ".join(f"{label}: {value}" for label, value in report.about[1:])
    header = printed.oddHeader
    if header is not None:
        header.left.text = f"{report.title}   {facts}".replace("&", "&&")
        header.left.size = 9


def _cell(sheet: WriteOnlyWorksheet, column: Column, row: Row, report: Report) -> Cell:
    kind = column.kind_of(row)
    cell = WriteOnlyCell(sheet, value=cell_value(kind, column.value(row), report))
    if kind in NUMBER_FORMATS:
        cell.number_format = NUMBER_FORMATS[kind]
    if column.centered:
        cell.alignment = _CENTERED
    return cell


def cell_value(kind: Kind, value: Any, report: Report) -> Any:
    """A JSON value as the workbook stores it; ``None`` is an empty cell."""
    if value is None:
        return None
    if kind is Kind.money:
        return Decimal(value)
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


def _dimensions(sheet: WriteOnlyWorksheet) -> Any:
    """A write-only sheet's column widths (set before its first row), which it shares with
    an ordinary sheet."""
    return cast(Worksheet, sheet).column_dimensions


def _display_width(text: str) -> int:
    """Columns a text takes: a CJK character is two."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
