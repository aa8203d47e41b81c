"""How a batch's lead facts change ``lead_count_day`` (the marks of ``shared.leadcounts``)
and ``lead_count_hour``.

Most facts a live floor reports are a lead's newest: a call placed now. Such a fact changes
the marks only around the newest day its lead already has in each scope, so the change is
worked out from those days alone. Every other change (a fact removed, moved to another day
or scope, or arriving after a later one of its lead) has its lead's marks recomputed from
``lead_fact`` before and after the batch.

A lead's count in an hour depends only on its facts in that hour, so every change to
``lead_count_hour``, in order or not, is worked out from the facts stored in the hours a
batch touches (:func:`hour_changes`).

``lead_last_minute`` and ``lead_last_hour`` depend only on each lead's latest fact per
scope, read before and after the batch (:func:`last_changes`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import TypeVar

from services.aggregator.facts import Scope
from shared.leadcounts import DIMENSIONS, KINDS, LEAD_FACTS, MARKS
from shared.timeutil import week_start

# kind, day, week, month, agent_id, team_id, campaign_id: a row of lead_count_day.
CountKey = tuple[int, date, date, date, str, str, str]

_WIDTH = len(MARKS)
_FACT_INDEX = {fact: i * _WIDTH for i, fact in enumerate(LEAD_FACTS)}
_FACT_COLUMN = {fact: i for i, fact in enumerate(LEAD_FACTS)}
_DAY, _WEEK_FIRST, _WEEK_LAST, _MONTH_FIRST, _MONTH_LAST = range(_WIDTH)
_MASKS = tuple(tuple(bool(kind & (1 << i)) for i in range(len(DIMENSIONS))) for kind in KINDS)


@dataclass
class MarkChanges:
    """Changes to the ``lead_count_day`` counters, per row."""

    first_weekday: int = 0
    # (kind, day, agent_id, team_id, campaign_id) -> the counters, in MARK_COLUMNS order
    rows: dict[tuple[int, date, str, str, str], list[int]] = field(default_factory=dict)
    _weeks: dict[date, date] = field(default_factory=dict)

    def _row(self, kind: int, day: date, scope: Scope) -> list[int]:
        key = (kind, day, *scope)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * (len(LEAD_FACTS) * _WIDTH)
        return row

    def _week(self, day: date) -> date:
        week = self._weeks.get(day)
        if week is None:
            week = self._weeks[day] = week_start(day, self.first_weekday)
        return week

    def append(
        self,
        fact: str,
        newest: dict[Scope, date],
        added: Iterable[tuple[date, Scope]],
    ) -> None:
        """Facts of one lead, each at least as late as any it had, in the order of their days.

        ``newest`` holds the lead's newest day with ``fact`` per full scope (agent, team,
        campaign) among the days that share a week or month with the added ones.
        """
        base = _FACT_INDEX[fact]
        latest: list[dict[Scope, date]] = [{} for _ in KINDS]
        for scope, day in newest.items():
            for kind, key in enumerate(projections(scope)):
                known = latest[kind].get(key)
                if known is None or day > known:
                    latest[kind][key] = day
        for day, scope in sorted(added):
            week = self._week(day)
            for kind, key in enumerate(projections(scope)):
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
        for key in before.keys() | after.keys():
            old = before.get(key)
            new = after.get(key)
            if old == new:
                continue
            kind, day, _week, _month, *scope = key
            row = self._row(kind, day, (scope[0], scope[1], scope[2]))
            for i in range(len(row)):
                row[i] += (new[i] if new else 0) - (old[i] if old else 0)

    def changed(self) -> dict[CountKey, list[int]]:
        """The rows that change, keyed as ``lead_count_day`` is."""
        return {
            (kind, day, self._week(day), day.replace(day=1), agent, team, campaign): values
            for (kind, day, agent, team, campaign), values in self.rows.items()
            if any(values)
        }


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
    items: Iterable[tuple[str, str, date, Scope]],
) -> dict[tuple[str, str], list[tuple[date, Scope]]]:
    """(lead, fact, day, scope) items by lead and fact."""
    out: dict[tuple[str, str], list[tuple[date, Scope]]] = defaultdict(list)
    for lead, fact, day, scope in items:
        out[(lead, fact)].append((day, scope))
    return out


K = TypeVar("K")

# kind, hour, agent_id, team_id, campaign_id: a row of lead_count_hour.
HourKey = tuple[int, datetime, str, str, str]
# lead, fact, hour, full scope: where a lead fact lies, as lead_count_hour sees it.
HourPlace = tuple[str, str, datetime, Scope]


def hour_changes(
    stored: dict[HourPlace, int], moves: Iterable[tuple[HourPlace, int]]
) -> dict[HourKey, list[int]]:
    """How ``lead_count_hour`` changes when lead facts move.

    ``stored`` counts the facts already stored at places of the moves' leads and facts; only
    the hours the moves touch are read from it (a lead's count in an hour depends only on
    its facts in that hour). Each move adds (+1) or takes away (-1) one fact at a place. A
    lead counts in an hour and scope where it has at least one fact, so the change is where
    that flips."""
    after: dict[HourPlace, int] = {}
    for place, step in moves:
        after[place] = after.get(place, stored.get(place, 0)) + step
    # Only a lead, fact and hour where a place starts or stops holding a fact can change.
    flipped = {place[:3] for place, n in after.items() if (n > 0) != (stored.get(place, 0) > 0)}
    if not flipped:
        return {}
    was: dict[tuple[str, str, datetime], set[Scope]] = defaultdict(set)
    now: dict[tuple[str, str, datetime], set[Scope]] = defaultdict(set)
    for place, n in stored.items():
        if n > 0 and place[:3] in flipped:
            was[place[:3]].add(place[3])
            if place not in after:
                now[place[:3]].add(place[3])  # a place the moves leave as it was
    for place, n in after.items():
        if n > 0 and place[:3] in flipped:
            now[place[:3]].add(place[3])

    out: dict[HourKey, list[int]] = {}
    for lead_fact_hour in flipped:
        _lead, fact, hour = lead_fact_hour
        column = _FACT_COLUMN[fact]
        old = _kinds_of(was[lead_fact_hour])
        new = _kinds_of(now[lead_fact_hour])
        for presence, step in ((new - old, 1), (old - new, -1)):
            for kind, key in presence:
                _add(out, (kind, hour, *key), column, step)
    return _nonzero(out)


def _kinds_of(scopes: set[Scope]) -> set[tuple[int, Scope]]:
    """Each scope as the row of each kind holds it."""
    return {pair for scope in scopes for pair in enumerate(projections(scope))}


def _add(rows: dict[K, list[int]], key: K, column: int, by: int) -> None:
    """Adds ``by`` to one counter of a row of changes, the row made when first met."""
    row = rows.get(key)
    if row is None:
        row = rows[key] = [0] * len(LEAD_FACTS)
    row[column] += by


def _nonzero(rows: dict[K, list[int]]) -> dict[K, list[int]]:
    """The rows of changes that change something."""
    return {key: row for key, row in rows.items() if any(row)}


# kind, minute (or hour), agent_id, team_id, campaign_id: a row of lead_last_minute (_hour).
LastKey = tuple[int, datetime, str, str, str]
# Per lead and fact, the moment of its latest fact in each full scope.
Latest = dict[tuple[str, str], dict[Scope, datetime]]


def last_changes(
    before: Latest,
    after: Latest,
    horizon: datetime,
    place: Callable[[datetime], tuple[datetime, datetime]],
) -> tuple[dict[LastKey, list[int]], dict[LastKey, list[int]]]:
    """How ``lead_last_minute`` and ``lead_last_hour`` change when leads' latest facts go
    from ``before`` to ``after``: where a lead's latest fact in a scope moves, one step back
    at the old moment and one forward at the new. Moments before ``horizon`` are not kept.
    ``place`` gives a moment's minute and local hour."""
    minutes: dict[LastKey, list[int]] = {}
    hours: dict[LastKey, list[int]] = {}
    places: dict[datetime, tuple[datetime, datetime]] = {}

    def step(
        column: int, kinds: Iterable[tuple[int, Scope]], moment: datetime | None, by: int
    ) -> None:
        if moment is None or moment < horizon:
            return
        placed = places.get(moment)
        if placed is None:
            placed = places[moment] = place(moment)
        minute, hour = placed
        for kind, key in kinds:
            _add(minutes, (kind, minute, *key), column, by)
            _add(hours, (kind, hour, *key), column, by)

    for pair in before.keys() | after.keys():
        old_moments, new_moments = before.get(pair, {}), after.get(pair, {})
        if old_moments == new_moments:
            continue
        column = _FACT_COLUMN[pair[1]]
        scopes = old_moments.keys() | new_moments.keys()
        if len(scopes) == 1:
            # One scope (a lead most often has one agent): every kind moves alike.
            (scope,) = scopes
            kinds = list(enumerate(projections(scope)))
            step(column, kinds, old_moments.get(scope), -1)
            step(column, kinds, new_moments.get(scope), 1)
            continue
        was = _latest_by_kind(old_moments)
        now = _latest_by_kind(new_moments)
        for kind_key in was.keys() | now.keys():
            old, new = was.get(kind_key), now.get(kind_key)
            if old != new:
                step(column, (kind_key,), old, -1)
                step(column, (kind_key,), new, 1)
    return _nonzero(minutes), _nonzero(hours)


def _latest_by_kind(latest: dict[Scope, datetime]) -> dict[tuple[int, Scope], datetime]:
    """The latest moment per kind and scope as its rows hold it, from those per full scope."""
    out: dict[tuple[int, Scope], datetime] = {}
    for scope, moment in latest.items():
        for kind, key in enumerate(projections(scope)):
            known = out.get((kind, key))
            if known is None or moment > known:
                out[(kind, key)] = moment
    return out
