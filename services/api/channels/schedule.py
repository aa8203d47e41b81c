"""Channel schedules: local times and weekdays in the team's zone.

A schedule is one or more entries separated by ``;``; an entry is one or more ``HH:MM``
times (comma-separated), then the days: ``daily``, ``weekdays`` (mon-fri), ``weekends``, or
days and ranges like ``mon-fri`` or ``mon,wed,fri``. Example: ``12:00,18:00 mon-fri;
10:00 sat``.

A slot is the UTC instant of a local time on a local day. Across a daylight-saving change a
local time that does not exist (the hour skipped in spring) is sent at the same wall-clock
distance after the change, and one that happens twice (autumn) is sent once, the first time
(``fold=0``): a slot's instant is unique, which is what the delivery claim keys on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAMED = {
    "daily": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ScheduleError(ValueError):
    """A schedule that cannot be read; the message says which part."""


@dataclass(frozen=True, slots=True)
class Entry:
    times: tuple[time, ...]
    weekdays: frozenset[int]


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        part = part.strip().lower()
        if part in _NAMED:
            days |= _NAMED[part]
        elif "-" in part:
            first, _, last = part.partition("-")
            if first not in DAYS or last not in DAYS:
                raise ScheduleError(f"{part!r} is not a range of days like mon-fri")
            a, b = DAYS.index(first), DAYS.index(last)
            days |= {d % 7 for d in range(a, b + 1 if b >= a else b + 8)}
        elif part in DAYS:
            days.add(DAYS.index(part))
        else:
            raise ScheduleError(f"{part!r} is not a day: use mon..sun, mon-fri, daily")
    return frozenset(days)


def parse_schedule(text: str) -> tuple[Entry, ...]:
    entries = []
    for raw in text.split(";"):
        raw = raw.strip()
        if not raw:
            continue
        clock, _, days = raw.partition(" ")
        times = []
        for value in clock.split(","):
            match = _TIME.match(value.strip())
            if match is None:
                raise ScheduleError(f"{value!r} is not a local time HH:MM")
            times.append(time(int(match[1]), int(match[2])))
        entries.append(Entry(tuple(times), _weekdays(days.strip() or "daily")))
    if not entries:
        raise ScheduleError("a schedule needs at least one time, e.g. '18:00 mon-fri'")
    return tuple(entries)


def slot_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local ``at`` on local ``day`` (see the module's note on DST)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def slots_between(
    entries: tuple[Entry, ...], zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Every slot in ``(start, end]``, in order, as UTC instants."""
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    found: set[datetime] = set()
    day = first
    while day <= last:
        for entry in entries:
            if day.weekday() in entry.weekdays:
                for at in entry.times:
                    instant = slot_instant(day, at, zone)
                    if start < instant <= end:
                        found.add(instant)
        day += timedelta(days=1)
    return sorted(found)
