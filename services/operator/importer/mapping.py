"""Column mappings: how the rows of a dialer's or CRM's CSV export become call events.

A mapping is a small TOML file. ``[time]`` says when each row happened: either a
timestamp column (``column``, optional ``format`` and ``timezone``), or a date put together
from ``day`` and ``month`` columns with a ``first_year`` that goes up by one each time the
month goes down (``year_rolls_over``: an export in date order without a year column), at a
fixed ``time_of_day``. Each ``[[events]]`` table is one event per row (``when`` makes it
conditional); its values are literals or templates: ``"{column}"`` takes a column,
``"{row}"`` the row number (1 = the first data row), ``"{occurred_at}"`` the row's time.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


class MappingError(ValueError):
    """The mapping file is wrong; the message says where."""


class RowError(ValueError):
    """One row cannot be mapped; the message says why."""


@dataclass(frozen=True)
class EventTemplate:
    fields: dict[str, Any]
    when_column: str | None = None
    when_equals: str | None = None

    def applies(self, row: dict[str, str]) -> bool:
        if self.when_column is None:
            return True
        return row.get(self.when_column, "").strip() == self.when_equals


@dataclass
class TimeSpec:
    zone: ZoneInfo
    column: str | None = None
    format: str | None = None
    day: str | None = None
    month: str | None = None
    year: str | None = None
    first_year: int | None = None
    year_rolls_over: bool = False
    time_of_day: time = time(12, 0)
    # State of the rolling year while reading one file in order.
    _year: int | None = field(default=None, repr=False)
    _last_month: int | None = field(default=None, repr=False)

    def occurred_at(self, row: dict[str, str]) -> datetime:
        if self.column is not None:
            raw = _cell(row, self.column)
            try:
                value = (
                    datetime.strptime(raw, self.format)
                    if self.format
                    else datetime.fromisoformat(raw)
                )
            except ValueError as exc:
                raise RowError(f"{self.column}={raw!r} is not a time: {exc}") from exc
            return value if value.tzinfo else value.replace(tzinfo=self.zone)
        assert self.day is not None and self.month is not None
        month = _month(_cell(row, self.month))
        day = _int(_cell(row, self.day), self.day)
        if self.year is not None:
            year = _int(_cell(row, self.year), self.year)
        else:
            year = self._rolled_year(month)
        try:
            on = date(year, month, day)
        except ValueError as exc:
            raise RowError(f"no such date {year}-{month:02d}-{day:02d}") from exc
        return datetime.combine(on, self.time_of_day, tzinfo=self.zone)

    def _rolled_year(self, month: int) -> int:
        if self._year is None:
            assert self.first_year is not None
            self._year = self.first_year
        elif self.year_rolls_over and self._last_month is not None and month < self._last_month:
            self._year += 1
        self._last_month = month
        return self._year


@dataclass
class Mapping:
    time: TimeSpec
    events: list[EventTemplate]
    delimiter: str = ","
    encoding: str = "utf-8-sig"

    def events_for(self, row_number: int, row: dict[str, str]) -> list[dict[str, Any]]:
        """The events of one row; raises :class:`RowError` when the row cannot be mapped."""
        occurred_at = self.time.occurred_at(row).isoformat()
        context = {"row": str(row_number), "occurred_at": occurred_at}
        out = []
        for template in self.events:
            if not template.applies(row):
                continue
            event = {k: _render(v, row, context) for k, v in template.fields.items()}
            event.setdefault("occurred_at", occurred_at)
            out.append(event)
        return out


def _cell(row: dict[str, str], column: str) -> str:
    if column not in row:
        raise RowError(f"the row has no column {column!r}")
    return row[column].strip()


def _int(raw: str, column: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise RowError(f"{column}={raw!r} is not a whole number") from exc


def _month(raw: str) -> int:
    if raw.isdigit() and 1 <= int(raw) <= 12:
        return int(raw)
    month = MONTHS.get(raw.lower())
    if month is None:
        raise RowError(f"{raw!r} is not a month")
    return month


def _render(value: Any, row: dict[str, str], context: dict[str, str]) -> Any:
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return context[name] if name in context else _cell(row, name)

    return _TEMPLATE.sub(substitute, value)


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MappingError(f"{path}: {exc}") from exc
    time_table = raw.get("time")
    if not isinstance(time_table, dict):
        raise MappingError(f"{path}: a [time] table is required")
    try:
        zone = ZoneInfo(time_table.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"{path}: [time] timezone: {exc}") from exc
    spec = TimeSpec(
        zone=zone,
        column=time_table.get("column"),
        format=time_table.get("format"),
        day=time_table.get("day"),
        month=time_table.get("month"),
        year=time_table.get("year"),
        first_year=time_table.get("first_year"),
        year_rolls_over=bool(time_table.get("year_rolls_over", False)),
        time_of_day=time.fromisoformat(time_table.get("time_of_day", "12:00")),
    )
    if spec.column is None and (spec.day is None or spec.month is None):
        raise MappingError(f"{path}: [time] needs column, or day and month")
    if spec.column is None and spec.year is None and spec.first_year is None:
        raise MappingError(f"{path}: [time] needs a year column or first_year")
    templates = []
    for index, table in enumerate(raw.get("events", [])):
        fields = dict(table)
        when = fields.pop("when", None)
        if "type" not in fields:
            raise MappingError(f"{path}: [[events]] number {index + 1} has no type")
        if when is not None and not (isinstance(when, dict) and set(when) == {"column", "equals"}):
            raise MappingError(f"{path}: when = {{ column = ..., equals = ... }}")
        templates.append(
            EventTemplate(
                fields,
                when_column=when["column"] if when else None,
                when_equals=str(when["equals"]) if when else None,
            )
        )
    if not templates:
        raise MappingError(f"{path}: at least one [[events]] table is required")
    source = raw.get("source", {})
    return Mapping(
        spec,
        templates,
        delimiter=source.get("delimiter", ","),
        encoding=source.get("encoding", "utf-8-sig"),
    )
