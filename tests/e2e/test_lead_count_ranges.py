"""Distinct leads over whole days, weeks and months: summed from ``lead_count_day`` where a
mark covers the range, counted from the facts otherwise, equal to the reference either way;
and by hour, summed from ``lead_count_hour``.

Five weeks of a floor whose 250 leads are each dialed about ten times, so most leads recur
within a day, a week and a month; two aggregator members apply it (a lead's facts arrive
through both): the first three weeks in time order, the rest shuffled, with duplicates and
cancelled sales.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select

from shared.leadcounts import (
    HOUR_KEY_COLUMNS,
    KEY_COLUMNS,
    LEAD_FACTS,
    MARK_COLUMNS,
    contributions,
    hour_contributions,
)
from shared.models import lead_count_day, lead_count_hour, lead_fact
from tests.floor import generate_floor
from tests.pipeline import TIMEZONE, Pipeline
from tests.reference import LEADS, bucket_of, keyed, reference_cells, rollup

ZONE = ZoneInfo(TIMEZONE)
START = datetime(2026, 10, 14, 0, 0, tzinfo=ZONE)


def _local(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZONE)


# [from, to) in local days, and the mark that makes each a sum (None: counted from facts).
RANGES = (
    (date(2026, 10, 27), date(2026, 10, 28)),  # one day
    (date(2026, 10, 26), date(2026, 10, 29)),  # Monday to Thursday: firsts of the week
    (date(2026, 10, 29), date(2026, 11, 2)),  # Thursday to the week's end, across a month end
    (date(2026, 11, 1), date(2026, 11, 13)),  # month start on: firsts of the month
    (date(2026, 10, 20), date(2026, 11, 1)),  # up to the month's end: lasts of the month
    (date(2026, 10, 1), date(2026, 11, 1)),  # a whole month
    (date(2026, 11, 2), date(2026, 11, 9)),  # a whole week
    (date(2026, 10, 22), date(2026, 11, 5)),  # neither: counted from the facts
)
GROUPS = ((), ("agent",), ("team",), ("campaign",), ("team", "campaign"), ("agent", "campaign"))


def _compare(
    pipeline: Pipeline,
    cells: dict[Any, Any],
    group: tuple[str, ...],
    granularity: str,
    start: date,
    end: date,
    **filters: str,
) -> int:
    body = pipeline.metrics(
        metrics=",".join((*LEADS, "contact_rate")),
        group_by=",".join(group) or "none",
        granularity=granularity,
        **{"from": _local(start).isoformat(), "to": _local(end).isoformat()},
        **filters,
    )
    expected = rollup(cells, group, bucket_of(granularity), _local(start), _local(end))
    expected = {k: v for k, v in expected.items() if any(v[name] for name in LEADS)}
    got = keyed(body["rows"], group)
    where = (group, granularity, start, end, filters)
    assert set(got) == set(expected), where
    for key, truth in expected.items():
        for name in LEADS:
            assert got[key][name] == truth[name], (*where, key, name)
    return len(expected)


@pytest.mark.timeout(600)
def test_distinct_leads_over_days_weeks_and_months(pipeline: Pipeline) -> None:
    floor = generate_floor(
        404, start=START, hours=24 * 36, teams=2, agents_per_team=3, calls_per_agent=420, leads=250
    )
    pipeline.start_aggregator("aggregator-2")
    # The first weeks as a live floor reports them (each fact its lead's newest), the rest
    # shuffled, repeated and corrected.
    events = sorted(floor.events, key=lambda e: datetime.fromisoformat(e["occurred_at"]))
    split = len(events) * 3 // 5
    random.Random(5).shuffle(rest := events[split:])
    pipeline.post(events[:split], batch=200)
    pipeline.post(rest, batch=500)
    pipeline.wait_caught_up(timeout=300)
    for member in ("aggregator", "aggregator-2"):
        assert "dead-lettered" not in pipeline.log(member), pipeline.log(member)[-3000:]

    # The table kept batch by batch equals the table computed from all facts at once.
    engine = create_engine(pipeline.database_url)
    try:
        with engine.connect() as connection:
            kept = {
                tuple(row[: len(KEY_COLUMNS)]): tuple(row[len(KEY_COLUMNS) :])
                for row in connection.execute(
                    select(*(lead_count_day.c[c] for c in (*KEY_COLUMNS, *MARK_COLUMNS)))
                )
            }
            computed = {
                tuple(row[: len(KEY_COLUMNS)]): tuple(row[len(KEY_COLUMNS) :])
                for row in connection.execute(contributions(lead_fact))
            }
            width = len(HOUR_KEY_COLUMNS)
            kept_hours = {
                tuple(row[:width]): tuple(row[width:])
                for row in connection.execute(
                    select(*(lead_count_hour.c[c] for c in (*HOUR_KEY_COLUMNS, *LEAD_FACTS)))
                )
            }
            computed_hours = {
                tuple(row[:width]): tuple(row[width:])
                for row in connection.execute(hour_contributions(lead_fact))
            }
    finally:
        engine.dispose()
    assert len(kept) > 1000
    assert kept == {k: v for k, v in computed.items() if any(v)}
    assert len(kept_hours) > 1000
    assert kept_hours == computed_hours

    cells = reference_cells(floor.events, ZONE)
    checked = 0
    for start, end in RANGES:
        for group in GROUPS:
            checked += _compare(pipeline, cells, group, "none", start, end)
    start, end = date(2026, 10, 22), date(2026, 11, 13)
    for granularity in ("day", "week", "month"):
        for group in GROUPS:
            checked += _compare(pipeline, cells, group, granularity, start, end)

    # By hour: a day the floor reported in time order, and a day of the shuffled part.
    team0 = {k: v for k, v in cells.items() if k[1] == "team-0"}
    for day in (date(2026, 10, 27), date(2026, 11, 10)):
        following = day + timedelta(days=1)
        for group in GROUPS:
            checked += _compare(pipeline, cells, group, "hour", day, following)
        checked += _compare(pipeline, team0, ("agent",), "hour", day, following, team_id="team-0")

    # Filters: one team's agents, one campaign's teams, two agents together (a lead both of
    # them dialed counts once: summed per agent it would not, so this one counts the facts).
    spring = {k: v for k, v in cells.items() if k[2] == "spring"}
    pair = {k: v for k, v in cells.items() if k[0] in ("agent-0-0", "agent-1-0")}
    for start, end in RANGES:
        checked += _compare(pipeline, team0, ("agent",), "none", start, end, team_id="team-0")
        checked += _compare(pipeline, spring, ("team",), "week", start, end, campaign_id="spring")
        checked += _compare(pipeline, pair, (), "none", start, end, agent_id="agent-0-0,agent-1-0")
    assert checked > 500
