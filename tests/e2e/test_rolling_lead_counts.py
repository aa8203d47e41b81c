"""Distinct leads of rolling windows, summed from the latest-fact tables (``lead_last_minute``
and ``lead_last_hour``), agree with the facts counted and with an independent reference.

A floor of the last 27 hours, its 150 leads each dialed about a dozen times, so most leads
have facts before, inside and after the start of any window; the horizon of the tables
falls inside it. Two aggregator members apply it: the first hours in time order (each fact
its lead's newest), the rest shuffled, with duplicates and cancelled sales, so latest facts
move back and forth across batches and members.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, create_engine, select

from services.api.metrics import queries
from services.api.metrics.periods import Granularity, TimeRange
from services.api.metrics.queries import Filters, Query
from shared.kpis import LEAD_COUNT_KEYS, LEAD_FACT_OF
from shared.leadcounts import (
    LAST_HORIZON,
    LAST_HOUR_KEY_COLUMNS,
    LAST_MINUTE_KEY_COLUMNS,
    LEAD_FACTS,
    last_contributions,
)
from shared.models import lead_fact, lead_last_hour, lead_last_minute
from shared.timeutil import floor_minute
from tests.floor import generate_floor
from tests.pipeline import TIMEZONE, Pipeline
from tests.reference import LEADS, bucket_of, keyed, reference_cells, rollup

ZONE = ZoneInfo(TIMEZONE)
GROUPS = ((), ("agent",), ("team",), ("campaign",), ("team", "campaign"), ("agent", "campaign"))


def _kept_and_computed(connection: Connection, horizon: datetime) -> list[tuple[Any, Any]]:
    """Each table as the batches kept it and as computed from all facts at once, from the
    first whole minute (hour) at ``horizon`` on: before it the batches wrote nothing."""
    pairs = []
    for table, keys in (
        (lead_last_minute, LAST_MINUTE_KEY_COLUMNS),
        (lead_last_hour, LAST_HOUR_KEY_COLUMNS),
    ):
        width = len(keys)
        kept = {
            tuple(row[:width]): tuple(row[width:])
            for row in connection.execute(select(*(table.c[c] for c in (*keys, *LEAD_FACTS))))
            if row[1] >= horizon
        }
        computed = {
            tuple(row[:width]): tuple(row[width:])
            for row in connection.execute(last_contributions(lead_fact, horizon, keys[1]))
            if row[1] >= horizon
        }
        pairs.append((kept, computed))
    return pairs


def _completed(call: Any, event_id: str, **changed: str) -> dict[str, Any]:
    """The call told again an hour after it started, with ``changed`` fields: the latest
    event of the call, so its fields are the call's from now on."""
    return {
        "event_id": event_id,
        "type": "call.completed",
        "occurred_at": (call.start + timedelta(hours=1)).isoformat(),
        "call_id": call.call_id,
        "agent_id": call.agent_id,
        "team_id": call.team_id,
        "campaign_id": call.campaign_id,
        "lead_id": call.lead_id,
        "direction": call.direction,
        "answered": call.answered,
        "answered_by": call.answered_by,
        "contact_reached": call.contact_reached,
        "talk_seconds": call.talk_seconds,
        "wrap_seconds": call.wrap_seconds,
        "disposition": call.disposition,
    } | changed


def _compare_with_reference(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    cells = reference_cells(events, ZONE, minutes=True)
    for period in ("last_24h", "last_1h"):
        for group in GROUPS:
            body = pipeline.metrics(
                metrics=",".join(LEADS), group_by=",".join(group) or "none", period=period
            )
            start = datetime.fromisoformat(body["from"])
            stop = datetime.fromisoformat(body["to"])
            expected = rollup(cells, group, bucket_of("none"), start, stop)
            expected = {k: v for k, v in expected.items() if any(v[name] for name in LEADS)}
            got = keyed(body["rows"], group)
            if group:
                assert set(got) == set(expected), (period, group)
            for key, truth in expected.items():
                for name in LEADS:
                    assert got[key][name] == truth[name], (period, group, key, name)


@pytest.mark.timeout(600)
def test_rolling_windows_sum_the_latest_facts_exactly(pipeline: Pipeline) -> None:
    now = datetime.now(UTC)
    floor = generate_floor(
        2712,
        start=now - timedelta(hours=27),
        hours=27,
        teams=2,
        agents_per_team=3,
        calls_per_agent=300,
        leads=150,
    )
    pipeline.start_aggregator("aggregator-2")
    events = sorted(floor.events, key=lambda e: datetime.fromisoformat(e["occurred_at"]))
    split = len(events) * 3 // 5
    random.Random(12).shuffle(rest := events[split:])
    pipeline.post(events[:split], batch=200)
    pipeline.post(rest, batch=400)
    pipeline.wait_caught_up(timeout=300)
    for member in ("aggregator", "aggregator-2"):
        assert "dead-lettered" not in pipeline.log(member), pipeline.log(member)[-3000:]

    end = floor_minute(datetime.now(UTC)) + timedelta(minutes=1)
    windows = [
        TimeRange(end - timedelta(hours=24), end),  # last_24h
        TimeRange(end - timedelta(hours=1), end),  # last_1h
        TimeRange(end - timedelta(hours=19, minutes=43), end),  # an edge minute at each end
        TimeRange(end - timedelta(minutes=15), end),
    ]
    engine = create_engine(pipeline.database_url)
    checked = 0
    try:
        with engine.connect() as connection:
            horizon = floor_minute(datetime.now(UTC) - LAST_HORIZON) + timedelta(minutes=1)
            for kept, computed in _kept_and_computed(connection, horizon):
                assert len(kept) > 500
                assert kept == computed

            facts = {key: LEAD_FACT_OF[key] for key in LEAD_COUNT_KEYS}
            for window in windows:
                for group in GROUPS:
                    for filters in (
                        Filters(key_teams=None),
                        Filters(team_ids=("team-0",), key_teams=None),
                        Filters(key_teams=frozenset({"team-1"})),
                    ):
                        query = Query(group, Granularity.none, window, filters, ZONE)
                        summed = queries._lead_counts_from_lasts(connection, facts, query)
                        counted = queries.lead_counts(
                            connection, LEAD_COUNT_KEYS, query, sums=False
                        )
                        assert summed is not None, (window, group, filters)
                        assert summed == counted, (window, group, filters)
                        checked += len(counted)
            # Two agents together are not a kind: their shared leads count once.
            pair = Filters(agent_ids=("agent-0-0", "agent-1-0"), key_teams=None)
            query = Query((), Granularity.none, windows[0], pair, ZONE)
            assert queries._lead_counts_from_lasts(connection, facts, query) is None
    finally:
        engine.dispose()
    assert checked > 150

    _compare_with_reference(pipeline, floor.events)

    # Facts that move: a call's lead corrected (its facts leave one lead for another), a
    # call's agent corrected, sales cancelled (their won facts go). Each lead's latest fact
    # is then read again where it was.
    since = now - timedelta(hours=20)
    calls = [c for c in floor.calls if c.start > since and not c.no_agent]
    sales = [s for s in floor.sales if s.at > since and not s.cancelled]
    assert len(calls) >= 2 and len(sales) >= 2
    moves = [
        _completed(calls[0], "move-1", lead_id="lead-corrected"),
        _completed(calls[1], "move-2", agent_id="agent-1-2", team_id="team-1"),
        *(
            {
                "event_id": f"cancel-{sale.order_id}",
                "type": "sale.cancelled",
                "occurred_at": (sale.at + timedelta(minutes=1)).isoformat(),
                "order_id": sale.order_id,
                "agent_id": sale.agent_id,
                "team_id": sale.team_id,
                "campaign_id": sale.campaign_id,
            }
            for sale in sales[:3]
        ),
    ]
    pipeline.post(moves)
    pipeline.wait_caught_up(timeout=60)
    engine = create_engine(pipeline.database_url)
    try:
        with engine.connect() as connection:
            horizon = floor_minute(datetime.now(UTC) - LAST_HORIZON) + timedelta(minutes=1)
            for kept, computed in _kept_and_computed(connection, horizon):
                assert kept == computed
    finally:
        engine.dispose()
    _compare_with_reference(pipeline, floor.events + moves)

    # A fact ahead of the clock would hide a lead's facts in the window: counted instead.
    ahead = {
        "event_id": "ahead-1",
        "type": "call.started",
        "occurred_at": (datetime.now(UTC) + timedelta(minutes=3)).isoformat(),
        "agent_id": "agent-0-0",
        "team_id": "team-0",
        "campaign_id": "spring",
        "call_id": "ahead-call-1",
        "lead_id": floor.calls[0].lead_id,
    }
    pipeline.post([ahead])
    pipeline.wait_caught_up(timeout=60)
    engine = create_engine(pipeline.database_url)
    try:
        with engine.connect() as connection:
            end = floor_minute(datetime.now(UTC)) + timedelta(minutes=1)
            window = TimeRange(end - timedelta(hours=24), end)
            query = Query(("agent",), Granularity.none, window, Filters(key_teams=None), ZONE)
            assert queries._lead_counts_from_lasts(connection, facts, query) is None
    finally:
        engine.dispose()
