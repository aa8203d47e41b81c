"""Named periods and explicit ranges, resolved to ``[from, to)`` in the deployment's zone.

Counters are kept per minute, so a range is aligned to whole minutes: ``from`` and ``to``
are floored to the minute and the answer says which range it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum

from shared.errors import InvalidInput
from shared.timeutil import add_months, floor_minute, local_midnight, quarter_start, week_start


class Period(StrEnum):
    today = "today"
    yesterday = "yesterday"
    wtd = "wtd"
    mtd = "mtd"
    qtd = "qtd"
    ytd = "ytd"
    last_15m = "last_15m"
    last_1h = "last_1h"
    last_24h = "last_24h"


class Granularity(StrEnum):
    none = "none"
    minute = "minute"
    hour = "hour"
    day = "day"
    week = "week"
    month = "month"


_ROLLING = {
    Period.last_15m: timedelta(minutes=15),
    Period.last_1h: timedelta(hours=1),
    Period.last_24h: timedelta(hours=24),
}


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> TimeRange:
        """The range of equal length just before this one."""
        return TimeRange(self.start - self.length, self.start)


def _calendar_start(period: Period, today: date, first_weekday: int) -> date:
    if period is Period.wtd:
        return week_start(today, first_weekday)
    if period is Period.mtd:
        return today.replace(day=1)
    if period is Period.qtd:
        return quarter_start(today)
    return date(today.year, 1, 1)


def period_end(period: Period, today: date, first_weekday: int) -> date:
    """The first day after the calendar period that contains ``today``."""
    if period is Period.wtd:
        return week_start(today, first_weekday) + timedelta(days=7)
    if period is Period.mtd:
        return add_months(today.replace(day=1), 1)
    if period is Period.qtd:
        return add_months(quarter_start(today), 3)
    return date(today.year + 1, 1, 1)


def resolve_range(
    period: Period | None,
    start: datetime | None,
    end: datetime | None,
    zone: tzinfo,
    *,
    now: datetime | None = None,
    first_weekday: int = 0,
    default: Period = Period.today,
) -> TimeRange:
    """``[from, to)`` for a named period or explicit bounds.

    Rolling windows end with the current minute; calendar periods run to the end of today.
    """
    now = now or datetime.now(UTC)
    if period is not None and (start is not None or end is not None):
        raise InvalidInput("give either period or from/to, not both")
    if start is not None or end is not None:
        if start is None or end is None:
            raise InvalidInput("from and to go together: give both, or a period")
        for name, value in (("from", start), ("to", end)):
            if value.tzinfo is None:
                raise InvalidInput(
                    f"{name} must carry a UTC offset, e.g. 2024-05-01T00:00:00+08:00"
                )
        result = TimeRange(floor_minute(start), floor_minute(end))
        if result.end <= result.start:
            raise InvalidInput("to must be at least one minute after from")
        return result
    period = period or default
    current_minute_end = floor_minute(now) + timedelta(minutes=1)
    if period in _ROLLING:
        return TimeRange(current_minute_end - _ROLLING[period], current_minute_end)
    today = now.astimezone(zone).date()
    if period is Period.today:
        return TimeRange(local_midnight(today, zone), local_midnight(today + timedelta(1), zone))
    if period is Period.yesterday:
        return TimeRange(local_midnight(today - timedelta(1), zone), local_midnight(today, zone))
    first = _calendar_start(period, today, first_weekday)
    return TimeRange(local_midnight(first, zone), local_midnight(today + timedelta(1), zone))
