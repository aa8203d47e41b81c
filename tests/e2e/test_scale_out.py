"""Scaling out: partitions added to the events topic of a running pipeline are used at once.

The aggregator polls with a 1 ms timeout here, so a rebalance's answers nearly always
arrive between two polls, and its watchdog (which would rejoin a member stuck in a
rebalance) is set far beyond the test's deadlines: a member that does not finish a
rebalance on its own fails the test instead of being rescued.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewPartitions

from tests.pipeline import MakePipeline, Pipeline

AGENTS = [f"scale-{i:02d}" for i in range(40)]


def _calls(prefix: str, at: datetime, per_agent: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{prefix}-{agent}-{n}",
            "type": "call.started",
            "occurred_at": at.isoformat(),
            "agent_id": agent,
            "call_id": f"{prefix}-call-{agent}-{n}",
            "lead_id": f"{prefix}-lead-{agent}-{n}",
        }
        for agent in AGENTS
        for n in range(per_agent)
    ]


def _wait_for(condition: Any, timeout: float, what: str, pipeline: Pipeline) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s\n{pipeline.log('aggregator')[-3000:]}")


def test_partitions_added_while_running_are_taken(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(
        CALLBOARD_POLL_TIMEOUT_MS="1",
        CALLBOARD_KAFKA_METADATA_REFRESH_SECONDS="1",
        CALLBOARD_REJOIN_AFTER_SECONDS="600",
    )
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    before = _calls("before", at, per_agent=2)
    pipeline.post(before)
    _wait_for(lambda: pipeline.assignments(), 30, "a first assignment", pipeline)
    pipeline.wait_caught_up(timeout=30)
    # One rebalance at start: the member joins knowing the topic's three partitions.
    assert pipeline.assignments() == [[0, 1, 2]]

    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap_servers)
    try:
        admin.create_partitions({pipeline.topic: NewPartitions(total_count=6)})
    finally:
        admin.close()
    taken = _wait_for(
        lambda: pipeline.assignments()[-1] == [0, 1, 2, 3, 4, 5],
        15,
        "the added partitions assigned",
        pipeline,
    )
    # Ingest learns of the partitions from its own metadata refresh (1 s here): post until
    # it has put events on every new one.
    after: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while True:
        batch = _calls(f"after{len(after)}", at, per_agent=1)
        pipeline.post(batch)
        after += batch
        ends = pipeline.end_offsets()
        if all(ends.get(p, 0) > 0 for p in (3, 4, 5)):
            break
        assert time.monotonic() < deadline, f"ingest put nothing on partitions 3-5: {ends}"
        time.sleep(0.5)
    caught_up = pipeline.wait_caught_up(timeout=15)

    applied = pipeline.applied_offsets()
    assert {p: applied.get(p, 0) for p in ends} == ends
    assert "rebalance did not complete" not in pipeline.log("aggregator")
    body = pipeline.metrics(
        **{
            "from": (at - timedelta(minutes=1)).isoformat(),
            "to": (at + timedelta(minutes=1)).isoformat(),
            "group_by": "agent",
            "metrics": "dials",
        }
    )
    expected = Counter(e["agent_id"] for e in before + after)
    assert {r["agent_id"]: r["dials"] for r in body["rows"]} == dict(expected)
    print(f"added partitions assigned in {taken:.1f} s; caught up {caught_up:.1f} s after posting")
