"""How a batch's lead facts change ``lead_count_day`` (the marks of ``shared.leadcounts``)
and ``lead_count_hour``.

Most facts a live floor reports are a lead's newest: a call placed now. Such a fact changes
the marks only around the newest day its lead already has in each scope, and the hour
counts only where it is the first of its hour there, so the change is worked out from the
lead's newest day and hour alone. Every other change (a fact removed, moved to another day
or scope, or arriving after a later one of its lead) has its lead's marks recomputed from
``lead_fact`` before and after the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from services.aggregator.facts import Scope
from shared.leadcounts import DIMENSIONS, KINDS, LEAD_FACTS, MARKS
from shared.timeutil import week_start

# kind, day, week, month, agent_id, team_id, campaign_id: a row of lead_count_day.
CountKey = tuple[int, date, date, date, str, str, str]
# kind, hour, agent_id, team_id, campaign_id: a row of lead_count_hour.
HourKey = tuple[int, datetime, str, str, str]

_WIDTH = len(MARKS)
_FACT_INDEX = {fact: i * _WIDTH for i, fact in enumerate(LEAD_FACTS)}
_FACT_COLUMN = {fact: i for i, fact in enumerate(LEAD_FACTS)}
_DAY, _WEEK_FIRST, _WEEK_LAST, _MONTH_FIRST, _MONTH_LAST = range(_WIDTH)
_MASKS = tuple(tuple(bool(kind & (1 << i)) for i in range(len(DIMENSIONS))) for kind in KINDS)


@dataclass
class MarkChanges:
    """Changes to the ``lead_count_day`` and ``lead_count_hour`` counters, per row."""

    first_weekday: int = 0
    # (kind, day, agent_id, team_id, campaign_id) -> the counters, in MARK_COLUMNS order
    rows: dict[tuple[int, date, str, str, str], list[int]] = field(default_factory=dict)
    # (kind, hour, agent_id, team_id, campaign_id) -> distinct leads, in LEAD_FACTS order
    hours: dict[HourKey, list[int]] = field(default_factory=dict)
    _weeks: dict[date, date] = field(default_factory=dict)

    def _row(self, kind: int, day: date, scope: Scope) -> list[int]:
        key = (kind, day, *scope)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * (len(LEAD_FACTS) * _WIDTH)
        return row

    def _hour_row(self, kind: int, hour: datetime, scope: Scope) -> list[int]:
        key = (kind, hour, *scope)
        row = self.hours.get(key)
        if row is None:
            row = self.hours[key] = [0] * len(LEAD_FACTS)
        return row

    def _week(self, day: date) -> date:
        week = self._weeks.get(day)
        if week is None:
            week = self._weeks[day] = week_start(day, self.first_weekday)
        return week

    def append(
        self,
        fact: str,
        newest: dict[Scope, tuple[date, datetime]],
        added: Iterable[tuple[date, datetime, Scope]],
    ) -> None:
        """Facts of one lead, each in an hour no earlier than any it had (day, hour, scope).

        ``newest`` holds the lead's newest day and hour with ``fact`` per full scope (agent,
        team, campaign) among the days that share a week or month with the added ones.
        """
        base = _FACT_INDEX[fact]
        column = _FACT_COLUMN[fact]
        latest: list[dict[Scope, date]] = [{} for _ in KINDS]
        latest_hour: list[dict[Scope, datetime]] = [{} for _ in KINDS]
        for scope, (day, hour) in newest.items():
            for kind, key in enumerate(projections(scope)):
                known = latest[kind].get(key)
                if known is None or day > known:
                    latest[kind][key] = day
                known_hour = latest_hour[kind].get(key)
                if known_hour is None or hour > known_hour:
                    latest_hour[kind][key] = hour
        for day, hour, scope in sorted(added):
            week = self._week(day)
            for kind, key in enumerate(projections(scope)):
                if latest_hour[kind].get(key) != hour:  # the lead's first of this hour here
                    latest_hour[kind][key] = hour
                    self._hour_row(kind, hour, key)[column] += 1
                before = latest[kind].get(key)
                if before == day:
                    continue
                latest[kind][key] = day
                row = self._row(kind, day, key)
                row[base + _DAY] += 1
                row[base + _WEEK_LAST] += 1
                row[base + _MONTH_LAST] += 1
                same_week = before is not None and self._week(before) == week
                same_month = (
                    before is not None and before.month == day.month and before.year == day.year
                )
                if not same_week:
                    row[base + _WEEK_FIRST] += 1
                if not same_month:
                    row[base + _MONTH_FIRST] += 1
                if before is not None and (same_week or same_month):
                    earlier = self._row(kind, before, key)
                    if same_week:
                        earlier[base + _WEEK_LAST] -= 1
                    if same_month:
                        earlier[base + _MONTH_LAST] -= 1

    def merge(
        self, before: dict[CountKey, tuple[int, ...]], after: dict[CountKey, tuple[int, ...]]
    ) -> None:
        """Add the difference between two computations of the same leads' counts."""
        for (kind, day, _week, _month, *scope), difference in _differences(before, after):
            _add(self._row(kind, day, (scope[0], scope[1], scope[2])), difference)

    def merge_hours(
        self, before: dict[HourKey, tuple[int, ...]], after: dict[HourKey, tuple[int, ...]]
    ) -> None:
        """Add the difference between two computations of the same leads' hour counts."""
        for (kind, hour, *scope), difference in _differences(before, after):
            _add(self._hour_row(kind, hour, (scope[0], scope[1], scope[2])), difference)

    def changed_hours(self) -> dict[HourKey, list[int]]:
        """The ``lead_count_hour`` rows that change."""
        return {key: values for key, values in self.hours.items() if any(values)}

    def changed(self) -> dict[CountKey, list[int]]:
        """The rows that change, keyed as ``lead_count_day`` is."""
        return {
            (kind, day, self._week(day), day.replace(day=1), agent, team, campaign): values
            for (kind, day, agent, team, campaign), values in self.rows.items()
            if any(values)
        }


def _differences(
    before: Mapping[Any, tuple[int, ...]], after: Mapping[Any, tuple[int, ...]]
) -> Iterator[tuple[Any, list[int]]]:
    """Per key whose counters differ, ``after`` minus ``before`` (a key missing: zeros)."""
    for key in before.keys() | after.keys():
        old = before.get(key)
        new = after.get(key)
        if old == new:
            continue
        width = len(new if new is not None else old or ())
        yield key, [(new[i] if new else 0) - (old[i] if old else 0) for i in range(width)]


def _add(row: list[int], difference: list[int]) -> None:
    for i, value in enumerate(difference):
        row[i] += value


@lru_cache(maxsize=4096)
def projections(scope: Scope) -> tuple[Scope, ...]:
    """The scope as the row of each kind holds it: "" where the kind does not look."""
    return tuple(
        (
            scope[0] if mask[0] else "",
            scope[1] if mask[1] else "",
            scope[2] if mask[2] else "",
        )
        for mask in _MASKS
    )


def grouped(
    items: Iterable[tuple[str, str, date, datetime, Scope]],
) -> dict[tuple[str, str], list[tuple[date, datetime, Scope]]]:
    """(lead, fact, day, hour, scope) items by lead and fact."""
    out: dict[tuple[str, str], list[tuple[date, datetime, Scope]]] = defaultdict(list)
    for lead, fact, day, hour, scope in items:
        out[(lead, fact)].append((day, hour, scope))
    return out
