"""The marks that make distinct leads additive: which mark covers a range, and the marks a
lead's newest facts change, against marks worked out from the lead's days by brute force;
the hour counts any change of facts makes, against counting the leads of each hour; and the
latest-fact sums, against counting the leads of recent windows."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.leadcounts import (
    MarkChanges,
    hour_changes,
    last_changes,
    projections,
)
from shared.leadcounts import KINDS, LEAD_FACTS, MARKS, range_mark
from shared.timeutil import week_start


def test_the_mark_that_covers_a_range() -> None:
    # November 2026: the 1st is a Sunday, the 2nd a Monday.
    cases = {
        (date(2026, 11, 5), date(2026, 11, 6)): "day",
        (date(2026, 11, 2), date(2026, 11, 5)): "week_first",  # Monday to Thursday
        (date(2026, 11, 2), date(2026, 11, 9)): "week_first",  # the whole week
        (date(2026, 11, 5), date(2026, 11, 9)): "week_last",  # Thursday to the week's end
        (date(2026, 11, 1), date(2026, 11, 25)): "month_first",  # month to date
        (date(2026, 10, 8), date(2026, 11, 1)): "month_last",  # the 24 days before it
        (date(2026, 10, 8), date(2026, 11, 2)): None,  # across a month end
        (date(2026, 11, 3), date(2026, 11, 6)): None,  # inside a week, neither end
        (date(2026, 10, 1), date(2026, 12, 1)): None,  # two months
    }
    for (start, end), mark in cases.items():
        assert range_mark(start, end, 0) == mark, (start, end)
    # Weeks from Sunday: the 1st starts one, the 8th the next.
    assert range_mark(date(2026, 11, 1), date(2026, 11, 4), 6) == "week_first"
    assert range_mark(date(2026, 11, 4), date(2026, 11, 8), 6) == "week_last"
    assert range_mark(date(2026, 11, 2), date(2026, 11, 5), 6) is None


SCOPES = [("a1", "t1", "c1"), ("a1", "t1", "c2"), ("a2", "t1", "c1"), ("a3", "t2", "c1")]


def _brute_force(
    facts: list[tuple[date, tuple[str, str, str]]],
) -> dict[tuple[Any, ...], list[int]]:
    """Each kind's marks from the set of days the lead has in each of its scopes."""
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(MARKS))
    for kind in KINDS:
        days: dict[tuple[str, str, str], set[date]] = defaultdict(set)
        for day, scope in facts:
            days[projections(scope)[kind]].add(day)
        for key, active in days.items():
            weeks: dict[date, list[date]] = defaultdict(list)
            months: dict[date, list[date]] = defaultdict(list)
            for day in active:
                out[(kind, day, *key)][0] += 1
                weeks[week_start(day)].append(day)
                months[day.replace(day=1)].append(day)
            for group, first, last in ((weeks, 1, 2), (months, 3, 4)):
                for members in group.values():
                    out[(kind, min(members), *key)][first] += 1
                    out[(kind, max(members), *key)][last] += 1
    return out


fact_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=70), st.sampled_from(SCOPES)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(facts=fact_lists, split=st.integers(min_value=0, max_value=25))
def test_newest_facts_change_the_marks_as_recounting_does(
    facts: list[tuple[int, tuple[str, str, str]]], split: int
) -> None:
    start = date(2026, 9, 20)
    ordered = sorted((start + timedelta(days=n), scope) for n, scope in facts)
    existing, added = ordered[:split], ordered[split:]
    newest: dict[tuple[str, str, str], date] = {}
    for day, scope in existing:
        newest[scope] = max(newest.get(scope, day), day)
    changes = MarkChanges()
    changes.append("reached", newest, added)

    before, after = _brute_force(existing), _brute_force(ordered)
    expected = {
        key: [a - b for a, b in zip(after.get(key, [0] * 5), before.get(key, [0] * 5), strict=True)]
        for key in before.keys() | after.keys()
    }
    expected = {k: v for k, v in expected.items() if any(v)}
    offset = LEAD_FACTS.index("reached") * len(MARKS)
    got = {
        (kind, day, agent, team, campaign): values[offset : offset + len(MARKS)]
        for (kind, day, _week, _month, agent, team, campaign), values in changes.changed().items()
    }
    assert got == expected


LEADS = ("L1", "L2", "L3")
HOUR = datetime(2026, 12, 5, 6, tzinfo=UTC)
# (lead, fact, hour, scope) for a fact's source
places = st.tuples(
    st.sampled_from(LEADS),
    st.sampled_from(("dialed", "reached")),
    st.integers(min_value=0, max_value=3).map(lambda n: HOUR + timedelta(hours=n)),
    st.sampled_from(SCOPES),
)


def _hour_counts(facts: dict[int, Any]) -> dict[tuple[Any, ...], list[int]]:
    """Distinct leads per kind, hour and scope, counted from the facts themselves."""
    leads: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for lead, fact, hour, scope in facts.values():
        for kind, key in enumerate(projections(scope)):
            leads[(kind, hour, *key, fact)].add(lead)
    counts: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(LEAD_FACTS))
    for (*row, fact), ids in leads.items():
        counts[tuple(row)][LEAD_FACTS.index(fact)] = len(ids)
    return counts


@settings(max_examples=300, deadline=None)
@given(
    before=st.dictionaries(st.integers(0, 12), places, max_size=12),
    changed=st.dictionaries(st.integers(0, 18), st.one_of(st.none(), places), max_size=10),
)
def test_hour_counts_change_as_recounting_does(
    before: dict[int, Any], changed: dict[int, Any]
) -> None:
    """Facts (by source) added, moved to another hour, lead or scope, and removed (None)."""
    after = dict(before)
    moves = []
    for source, place in changed.items():
        if source in before:
            moves.append((before[source], -1))
            del after[source]
        if place is not None:
            moves.append((place, 1))
            after[source] = place
    stored: dict[Any, int] = defaultdict(int)
    for place in before.values():
        stored[place] += 1

    old, new = _hour_counts(before), _hour_counts(after)
    expected = {}
    for key in old.keys() | new.keys():
        difference = [a - b for a, b in zip(new[key], old[key], strict=True)]
        if any(difference):
            expected[key] = difference
    assert hour_changes(dict(stored), moves) == expected


NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HORIZON = NOW - timedelta(hours=3)
# A fact: (lead, fact, minutes after the horizon (negative: before it), scope).
recent = st.tuples(
    st.sampled_from(["l1", "l2", "l3"]),
    st.sampled_from(LEAD_FACTS[:2]),
    st.integers(-30, 170),
    st.sampled_from(SCOPES),
)


def _latest(facts: dict[int, Any]) -> dict[tuple[str, str], dict[Any, datetime]]:
    """What the aggregator reads: per lead and fact, the latest moment per full scope among
    the facts at the horizon or later."""
    out: dict[tuple[str, str], dict[Any, datetime]] = defaultdict(dict)
    for lead, fact, minutes, scope in facts.values():
        moment = HORIZON + timedelta(minutes=minutes, seconds=7)
        if moment >= HORIZON and moment > out[(lead, fact)].get(scope, HORIZON - timedelta(1)):
            out[(lead, fact)][scope] = moment
    return out


def _place(moment: datetime) -> tuple[datetime, datetime]:
    return moment.replace(second=0), moment.replace(minute=0, second=0)


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(
        st.dictionaries(st.integers(0, 15), st.one_of(st.none(), recent), max_size=8),
        min_size=1,
        max_size=4,
    ),
    window=st.tuples(st.integers(0, 160), st.integers(1, 170)),
)
def test_latest_facts_sum_to_the_distinct_leads_of_a_recent_window(
    batches: list[dict[int, Any]], window: tuple[int, int]
) -> None:
    """Batches of facts added, moved and removed (None), the minute and hour sums kept by
    :func:`last_changes`; then, for a window from the horizon on with no fact at or after
    its end, the minutes summed (or whole hours, where the window has them) give each
    scope's distinct leads."""
    facts: dict[int, Any] = {}
    minutes: dict[Any, int] = defaultdict(int)
    hours: dict[Any, int] = defaultdict(int)
    for batch in batches:
        before = _latest(facts)
        for source, fact in batch.items():
            if fact is None:
                facts.pop(source, None)
            else:
                facts[source] = fact
        changed = last_changes(before, _latest(facts), HORIZON, _place)
        for kept, rows in zip((minutes, hours), changed, strict=True):
            for (kind, bucket, *key), row in rows.items():
                for column, step in enumerate(row):
                    kept[(kind, bucket, *key, LEAD_FACTS[column])] += step
    # Nothing is kept before the horizon, and no count goes below zero.
    assert all(key[1] >= HORIZON and n >= 0 for key, n in minutes.items())
    start = HORIZON + timedelta(minutes=window[0])
    end = start + timedelta(minutes=window[1])
    placed = [
        (HORIZON + timedelta(minutes=m, seconds=7), lead, f, s) for lead, f, m, s in facts.values()
    ]
    if any(moment >= end for moment, *_ in placed):
        return  # a later fact hides the window's: such a read is counted from the facts
    leads: dict[Any, set[str]] = defaultdict(set)
    for moment, lead, fact, scope in placed:
        if start <= moment < end:
            for kind, projected in enumerate(projections(scope)):
                leads[(kind, *projected, fact)].add(lead)
    summed: dict[Any, int] = defaultdict(int)
    for (kind, bucket, *rest), n in minutes.items():
        if start <= bucket < end:
            summed[(kind, *rest)] += n
    assert {k: n for k, n in summed.items() if n} == {k: len(v) for k, v in leads.items()}
    # Whole hours from the hour sums give the same as their minutes.
    for (kind, hour, *key), n in hours.items():
        in_hour = sum(
            m
            for (k, bucket, *rest), m in minutes.items()
            if (k, *rest) == (kind, *key) and hour <= bucket < hour + timedelta(hours=1)
        )
        assert n == in_hour
