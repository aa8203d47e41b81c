"""Named periods and explicit ranges, resolved to ``[from, to)`` in the deployment's zone.

Counters are kept per minute, so a range is aligned to whole minutes: ``from`` and ``to``
are floored to the minute and the answer says which range it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

from shared.errors import InvalidInput
from shared.playbook import PeriodKind, period_start_of
from shared.timeutil import floor_minute, local_midnight

# Periods and moments this API reasons about: wide enough for any floor, narrow enough that
# date arithmetic on them never leaves the calendar.
FIRST_YEAR, LAST_YEAR = 2000, 2099


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


# The calendar periods to date, as the playbook's period kinds.
_KIND = {
    Period.wtd: PeriodKind.week,
    Period.mtd: PeriodKind.month,
    Period.qtd: PeriodKind.quarter,
    Period.ytd: PeriodKind.year,
}


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
    first = period_start_of(_KIND[period], today, first_weekday)
    return TimeRange(local_midnight(first, zone), local_midnight(today + timedelta(1), zone))


def bucket_count(rng: TimeRange, granularity: Granularity, zone: tzinfo) -> int:
    """The most buckets of ``granularity`` that ``rng`` can touch in ``zone``: known before
    anything is read, so an answer's size can be judged before it is computed."""
    if granularity is Granularity.none:
        return 1
    if granularity is Granularity.minute:
        return -(-rng.length // timedelta(minutes=1))
    if granularity is Granularity.hour:
        # Zones a quarter or half hour off UTC, and clock changes, add a partial hour.
        return -(-rng.length // timedelta(hours=1)) + 1
    first = rng.start.astimezone(zone).date()
    last = rng.end.astimezone(zone).date()
    days = (last - first).days + 1
    if granularity is Granularity.day:
        return days
    if granularity is Granularity.week:
        return days // 7 + 2
    return (last.year - first.year) * 12 + last.month - first.month + 1
