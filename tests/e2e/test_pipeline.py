"""End to end: events over HTTP, through Kafka and the aggregator, out of the read API."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tests.floor import Floor, generate_floor, reference_by_agent
from tests.pipeline import TIMEZONE, Pipeline
from tests.reference import COUNTERS, LEADS, MONEY, ratio

ZONE = ZoneInfo(TIMEZONE)
DAY_START = datetime(2026, 11, 2, 9, 0, tzinfo=ZONE)
COUNTS = (*COUNTERS, *LEADS)


def _day_params(**extra: Any) -> dict[str, Any]:
    day = DAY_START.replace(hour=0)
    return {
        "from": day.isoformat(),
        "to": (day + timedelta(days=1)).isoformat(),
        "metrics": ",".join((*COUNTS, *MONEY, "dispositions", "connect_rate", "close_rate")),
        **extra,
    }


def assert_matches_reference(pipeline: Pipeline, floor: Floor) -> None:
    expected = reference_by_agent(floor)
    body = pipeline.metrics(**_day_params(group_by="agent"))
    rows = {row["agent_id"]: row for row in body["rows"]}
    assert set(rows) == set(expected)
    for agent_id, truth in expected.items():
        row = rows[agent_id]
        for key in COUNTS:
            assert row[key] == truth.get(key, 0), (agent_id, key)
        for key in MONEY:
            assert Decimal(row[key]) == truth[key], (agent_id, key)
        assert row["dispositions"] == truth["dispositions"], agent_id
        assert row["connect_rate"] == ratio(truth.get("connects", 0), truth.get("dials", 0))
        assert row["close_rate"] == ratio(truth.get("leads_won", 0), truth.get("leads_quoted", 0))


def test_floor_through_the_pipeline_matches_the_truth(pipeline: Pipeline) -> None:
    floor = generate_floor(7, start=DAY_START, calls_per_agent=80)
    assert len(floor.events) > 2000
    accepted = pipeline.post(floor.events)
    assert accepted == len(floor.events)
    pipeline.wait_caught_up()
    assert_matches_reference(pipeline, floor)
    # The member joined knowing the topic's partitions: one rebalance, not a second one
    # as soon as it learns of them.
    assert pipeline.assignments() == [[0, 1, 2]]

    # The floor as a whole: lead counts are distinct over all agents, not a sum.
    total = pipeline.metrics(**_day_params())["rows"][0]
    dialed = {c.lead_id for c in floor.calls if c.direction == "outbound"}
    assert total["leads_dialed"] == len(dialed)
    assert total["dials"] == sum(1 for c in floor.calls if c.direction == "outbound")


def test_aggregator_killed_between_database_and_kafka_commit(pipeline: Pipeline) -> None:
    floor = generate_floor(11, start=DAY_START, calls_per_agent=40)
    pipeline.stop("aggregator")
    pipeline.post(floor.events)
    # Small batches, and a hard exit right after the second batch's database commit.
    pipeline.start_aggregator(
        CALLBOARD_BATCH_MAX_RECORDS="300", CALLBOARD_FAILPOINT="after_db_commit:2"
    )
    exit_code = pipeline.processes["aggregator"].wait(timeout=120)
    assert exit_code == 137, pipeline.log("aggregator")[-2000:]
    pipeline.processes.pop("aggregator")
    applied_before_restart = sum(pipeline.applied_offsets().values())
    assert 0 < applied_before_restart < len(floor.events)

    pipeline.start_aggregator("aggregator-2", CALLBOARD_BATCH_MAX_RECORDS="300")
    pipeline.wait_caught_up()
    assert_matches_reference(pipeline, floor)
