"""Time in the deployment's zone: buckets, calendar periods and rolling windows.

Everything is timezone-aware. The database keeps UTC; local calendar positions (hour, day,
week, month) are computed here, the same way when writing and when reading.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo


def parse_minute_text(minute_text: str) -> datetime:
    """``YYYY-MM-DDTHH:MM`` in UTC to an aware datetime."""
    return datetime.strptime(minute_text, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)


def floor_minute(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(second=0, microsecond=0)


def floor_local_hour(value: datetime, zone: tzinfo) -> datetime:
    """Start of the local hour containing ``value``, in UTC."""
    local = value.astimezone(zone)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """Start of the local ``day``, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def week_start(day: date, first_weekday: int = 0) -> date:
    return day - timedelta(days=(day.weekday() - first_weekday) % 7)


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def as_utc(value: datetime) -> datetime:
    """A timestamp read back from the database, as aware UTC (SQLite drops the offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
