"""Consumer lag: the status rules on their own, then through a real consumer that is frozen,
stopped and restarted while events keep coming, cross-checked against Kafka."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kafka import KafkaAdminClient

from services.api.operations.lag import Observation, evaluate, stuck_seconds, worst
from tests.pipeline import Pipeline

WINDOW, STALL = 60.0, 60.0


def window(*lags: int, committed: list[int] | None = None, owned: bool = True, step: float = 5):
    committed = committed or [100 + i for i in range(len(lags))]
    return [
        Observation(
            at=1000 + i * step,
            end_offset=c + lag,
            committed_offset=c,
            lag=lag,
            oldest_unprocessed_at=None,
            last_commit_at=1000 + i * step,
            owned=owned,
        )
        for i, (lag, c) in enumerate(zip(lags, committed, strict=True))
    ]


def test_no_lag_is_ok_whatever_came_before() -> None:
    assert evaluate(window(5, 9, 40, 0), WINDOW, STALL) == "ok"


def test_growing_lag_while_committing_is_a_warning() -> None:
    growing = window(*range(1, 14))
    assert evaluate(growing, WINDOW, STALL) == "warning"
    # Shrinking, or caught up once within the window, or not yet half a window: ok.
    assert evaluate(window(*range(13, 0, -1)), WINDOW, STALL) == "ok"
    assert evaluate(window(0, *range(1, 13)), WINDOW, STALL) == "ok"
    assert evaluate(growing[-3:], WINDOW, STALL) == "ok"
    assert evaluate(window(5, 7, 6, 8, 9, 9, 10), WINDOW, STALL) == "ok"


def test_offsets_standing_still_with_lag_is_stalled_or_error() -> None:
    still = window(*range(1, 14), committed=[100] * 13)
    assert stuck_seconds(still) == 60
    assert evaluate(still, WINDOW, STALL) == "stalled"
    assert evaluate(window(*range(1, 14), committed=[100] * 13, owned=False), WINDOW, STALL) == (
        "error"
    )
    # The data dates it without waiting for a window: events have waited since the later
    # of the oldest unprocessed event and the last commit.
    one = Observation(2000, 110, 100, 10, 1900.0, 1500.0, owned=False)
    assert stuck_seconds([one]) == 100
    assert evaluate([one], WINDOW, STALL) == "error"
    recent = Observation(2000, 110, 100, 10, 1900.0, 1990.0, owned=True)
    assert evaluate([recent], WINDOW, STALL) == "ok"


def test_the_topic_takes_the_worst_status() -> None:
    assert worst(["ok", "warning", "error", "stalled"]) == "error"
    assert worst(["ok", "stalled", "warning"]) == "stalled"
    assert worst([]) == "ok"


def _call(i: int) -> dict[str, Any]:
    return {
        "event_id": f"lag-{i}",
        "type": "call.started",
        "occurred_at": "2026-11-02T10:00:00+08:00",
        # Many agents: the events reach every partition.
        "agent_id": f"a-{i % 12}",
        "call_id": f"c-{i}",
        "lead_id": f"L-{i}",
    }


class Feeder:
    """Posts an event every few tenths of a second until stopped."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self.sent = 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.15):
            self.sent += 1
            response = self.client.post("/v1/events", json=[_call(self.sent), _call(-self.sent)])
            assert response.status_code == 202, response.text

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


@pytest.fixture
def watched(
    kafka_bootstrap_servers: str,
    database_url: str,
    topic: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    with Pipeline(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=database_url,
        topic=topic,
        workdir=tmp_path_factory.mktemp("lag"),
        extra_env={
            "CALLBOARD_LAG_SAMPLE_SECONDS": "0.3",
            "CALLBOARD_LAG_WINDOW_SECONDS": "2",
            "CALLBOARD_LAG_STALL_SECONDS": "3",
        },
    ) as pipeline:
        yield pipeline


def lag(pipeline: Pipeline) -> dict[str, Any]:
    response = pipeline.api.get("/v1/ops/lag")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_status(pipeline: Pipeline, wanted: str, timeout: float) -> list[str]:
    """Poll the lag endpoint until its status is ``wanted``; returns the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = lag(pipeline)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == wanted:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"status never became {wanted!r}; saw {seen}")


def kafka_group_offsets(pipeline: Pipeline) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets(pipeline.group_id)[pipeline.group_id]
    finally:
        admin.close()
    return {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == pipeline.topic}


def assert_caught_up_and_agrees_with_kafka(pipeline: Pipeline) -> None:
    wait_for_status(pipeline, "ok", 60)
    body = lag(pipeline)
    end = pipeline.end_offsets()
    from_kafka = kafka_group_offsets(pipeline)
    for p in body["partitions"]:
        assert p["lag"] == 0 and p["status"] == "ok", p
        assert p["committed_offset"] == end[p["partition"]]
        # What the endpoint reports, what the database holds and what Kafka holds agree.
        assert p["kafka_committed_offset"] == from_kafka.get(p["partition"]), (p, from_kafka)
        assert p["committed_offset"] == pipeline.applied_offsets().get(p["partition"], 0)
        assert p["consumer_assigned"] is True


@pytest.mark.timeout(240)
def test_lag_through_a_consumer_frozen_stopped_and_restarted(watched: Pipeline) -> None:
    pipeline = watched
    pipeline.post([_call(i) for i in range(60)])
    pipeline.wait_caught_up()
    # Kafka's copy of the offsets follows the database commit; give it a moment.
    deadline = time.monotonic() + 10
    while kafka_group_offsets(pipeline) != {p: o for p, o in pipeline.end_offsets().items() if o}:
        assert time.monotonic() < deadline, kafka_group_offsets(pipeline)
        time.sleep(0.2)
    assert_caught_up_and_agrees_with_kafka(pipeline)

    aggregator = pipeline.processes["aggregator"]
    with Feeder(str(pipeline.ingest.base_url)):
        # Frozen: still a member of the group (until its session times out) but no progress.
        os.kill(aggregator.pid, signal.SIGSTOP)
        try:
            seen = wait_for_status(pipeline, "stalled", 9)
        finally:
            os.kill(aggregator.pid, signal.SIGCONT)
        assert "warning" in seen, seen  # the lag grew before the offsets counted as stuck
        body = lag(pipeline)
        assert all(p["consumer_assigned"] for p in body["partitions"])

        # Stopped: it leaves the group and commits nothing while events keep coming.
        pipeline.stop("aggregator")
        wait_for_status(pipeline, "error", 30)
        body = lag(pipeline)
        assert body["status"] == "error"
        assert not any(p["consumer_assigned"] for p in body["partitions"])
        assert all(p["lag"] > 0 and p["lag_seconds"] > 0 for p in body["partitions"])

        # Restarted: it catches up with the events that still arrive.
        pipeline.start_aggregator("aggregator-2")
        wait_for_status(pipeline, "ok", 60)
    pipeline.wait_caught_up()
    deadline = time.monotonic() + 10
    while kafka_group_offsets(pipeline) != pipeline.end_offsets():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert_caught_up_and_agrees_with_kafka(pipeline)

    # The API publishes the same numbers for Prometheus.
    exposition = pipeline.api.get("/metrics").text
    assert f'callboard_consumer_lag_events{{partition="0",topic="{pipeline.topic}"}} 0.0' in (
        exposition
    )
    assert "callboard_consumer_lag_status{" in exposition
