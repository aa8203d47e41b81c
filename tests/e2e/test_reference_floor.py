"""A generated floor of over 50,000 events: the API agrees with an independent reference for
every KPI, scope and granularity tested, the disposition flags' KPIs among them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.floor import generate_floor
from tests.pipeline import TIMEZONE, Pipeline
from tests.reference import reference_cells, served_and_true, value_pairs

ZONE = ZoneInfo(TIMEZONE)
# 20:00 to 04:00 local: the floor crosses midnight, so day buckets and day rollups both count.
START = datetime(2026, 11, 5, 20, 0, tzinfo=ZONE)


@pytest.fixture(scope="module")
def big_floor() -> Any:
    floor = generate_floor(
        2026,
        start=START,
        hours=8,
        teams=4,
        agents_per_team=10,
        calls_per_agent=340,
        leads=3000,
        flag_codes=True,
    )
    assert len(floor.events) >= 50_000
    return floor


@pytest.mark.timeout(900)
def test_fifty_thousand_events_agree_with_the_reference(pipeline: Pipeline, big_floor: Any) -> None:
    pipeline.post(big_floor.events, batch=2000)
    pipeline.wait_caught_up(timeout=300)
    cells = reference_cells(big_floor.events, ZONE)
    start, end = START - timedelta(hours=1), START + timedelta(hours=10)
    checked = 0
    for group in ((), ("agent",), ("team",), ("campaign",), ("team", "campaign")):
        for granularity in ("none", "hour", "day"):
            expected, got = served_and_true(pipeline, cells, group, granularity, start, end)
            assert set(got) == set(expected), (group, granularity)
            for key, truth in expected.items():
                for name, actual, wanted in value_pairs(got[key], truth):
                    assert actual == wanted, (group, granularity, key, name)
                checked += 1
    assert checked > 400
