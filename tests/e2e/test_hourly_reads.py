"""Rolling windows and today by hour, read from the hourly counters (``kpi_hour``) with
their distinct-lead counts (``lead_count_hour``), agree with an independent reference.

The floor runs from 26 hours ago to a few minutes ahead of the clock, so ``last_24h`` has
minutes at both edges and leads seen before, inside and ahead of the window. The reference
places the window exactly: its cells are hours of a fixed-offset zone whose hours start on
the window's own minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.floor import generate_floor
from tests.pipeline import TIMEZONE, Pipeline
from tests.reference import METRICS, bucket_of, keyed, reference_cells, rollup, value_pairs

ZONE = ZoneInfo(TIMEZONE)
GROUPS: tuple[tuple[str, ...], ...] = ((), ("agent",), ("team",), ("team", "campaign"))


def _ahead(at: datetime, lead: str, n: int) -> dict[str, Any]:
    """A call started ``at``, ahead of the clock (the ingest tolerates 5 minutes)."""
    return {
        "event_id": f"ahead-{n}",
        "type": "call.started",
        "occurred_at": at.isoformat(),
        "agent_id": "agent-0-0",
        "team_id": "team-0",
        "campaign_id": "spring",
        "call_id": f"ahead-call-{n}",
        "lead_id": lead,
    }


def _compare(body: dict[str, Any], expected: dict[tuple[Any, ...], Any], what: Any) -> int:
    got = keyed(body["rows"], what[0])
    assert set(got) == set(expected), what
    for key, truth in expected.items():
        for name, actual, wanted in value_pairs(got[key], truth):
            assert actual == wanted, (*what, key, name)
    return len(expected)


@pytest.mark.timeout(600)
def test_last_24h_and_today_by_hour_agree_with_the_reference(pipeline: Pipeline) -> None:
    now = datetime.now(UTC)
    floor = generate_floor(
        2611,
        start=now - timedelta(hours=26),
        hours=26,
        teams=2,
        agents_per_team=4,
        calls_per_agent=150,
        leads=120,
    )
    # Ahead of the clock: a lead seen nowhere else (not in the window) and one of the
    # floor's leads (in it, once).
    ahead = [
        _ahead(now + timedelta(minutes=4), "lead-only-ahead", 1),
        _ahead(now + timedelta(minutes=4), floor.calls[0].lead_id, 2),
    ]
    events = floor.events + ahead
    pipeline.post(events, batch=1000)
    pipeline.wait_caught_up(timeout=300)

    local_cells = reference_cells(events, ZONE)
    minute_cells = reference_cells(events, ZONE, minutes=True)
    by_hour = bucket_of("hour")
    rolling = today = rolling_hours = 0
    for group in GROUPS:
        body = pipeline.metrics(
            metrics=METRICS, group_by=",".join(group) or "none", period="last_24h"
        )
        start = datetime.fromisoformat(body["from"])
        end = datetime.fromisoformat(body["to"])
        assert end - start == timedelta(hours=24)
        # Hours that start on the window's minute: the window is 24 of them exactly.
        shifted = timezone(-timedelta(minutes=start.astimezone(UTC).minute))
        cells = reference_cells(events, shifted)  # type: ignore[arg-type]
        expected = rollup(cells, group, bucket_of("none"), start, end)
        rolling += _compare(body, expected, (group, "last_24h"))

        # By hour: whole hours inside, part-hours at both edges.
        body = pipeline.metrics(
            metrics=METRICS,
            group_by=",".join(group) or "none",
            period="last_24h",
            granularity="hour",
        )
        start = datetime.fromisoformat(body["from"])
        end = datetime.fromisoformat(body["to"])
        expected = rollup(
            minute_cells, group, lambda minute: by_hour(minute.replace(minute=0)), start, end
        )
        rolling_hours += _compare(body, expected, (group, "last_24h by hour"))

        body = pipeline.metrics(
            metrics=METRICS, group_by=",".join(group) or "none", period="today", granularity="hour"
        )
        start = datetime.fromisoformat(body["from"])
        end = datetime.fromisoformat(body["to"])
        expected = rollup(local_cells, group, bucket_of("hour"), start, end)
        today += _compare(body, expected, (group, "today by hour"))
    # Every group of the floor is in the window; today has at least its current hour, and
    # how many more depends on the hour the test runs at in the floor's zone.
    agents = {call.agent_id for call in floor.calls if not call.no_agent}
    teams = {call.team_id for call in floor.calls}
    pairs = {(call.team_id, call.campaign_id) for call in floor.calls}
    assert rolling == 1 + len(agents) + len(teams) + len(pairs)
    assert today >= len(GROUPS)
    assert rolling_hours >= 24 * len(GROUPS)
