"""The soak's own logic (bench/soak.py): its floor, how it counts, its recovery times."""

from __future__ import annotations

import os
import random
from collections import Counter

from bench.soak import (
    AGGREGATOR_KILLS,
    LEADER_KILLS,
    MEMBERSHIP_CHANGES,
    POSTGRES_RESTARTS,
    Sample,
    acknowledged_events,
    applying_again,
    caught_up,
    chaos_plan,
    fault_moments,
    longest_wait_for_202,
    rss_mib,
    soak_floor,
    summary_line,
)
from tests.faults import Attempt, Dialer


def test_the_floor_has_exactly_the_events_asked_for_and_the_same_for_a_seed() -> None:
    floor = soak_floor(5_000, seed=3)
    assert len({e["event_id"] for e in floor}) == 5_000
    # The floor's own repeats come on top: the same id, the same event.
    assert len(floor) > 5_000
    by_id: dict[str, dict[str, object]] = {}
    for event in floor:
        assert by_id.setdefault(event["event_id"], event) == event
    assert soak_floor(5_000, seed=3) == floor
    assert soak_floor(5_000, seed=4) != floor


def test_trimming_leaves_every_call_and_sale_whole() -> None:
    floor = soak_floor(5_000, seed=3)
    calls: dict[str, set[str]] = {}
    for event in floor:
        if event["type"].startswith("call."):
            calls.setdefault(event["call_id"], set()).add(event["type"])
    # Every call keeps its first event: call.started or the CDR-style call.completed.
    assert all(kinds & {"call.started", "call.completed"} for kinds in calls.values())
    cancelled = {e["order_id"] for e in floor if e["type"] == "sale.cancelled"}
    closed = {e["order_id"] for e in floor if e["type"] == "sale.closed"}
    assert cancelled <= closed


def test_an_event_acknowledged_twice_is_one_event() -> None:
    events = [{"event_id": f"e-{n}", "type": "call.started"} for n in range(10)]
    first, second = Dialer("http://127.0.0.1:9", events), Dialer("http://127.0.0.1:9", events)
    # A retried batch, and the floor's repeats of e-3 and e-4 posted by another dialer.
    first.acknowledged.update({e["event_id"]: e for e in events[:6]})
    first.acknowledged.update({e["event_id"]: e for e in events[4:6]})
    second.acknowledged.update({e["event_id"]: e for e in events[3:5] + events[8:]})
    merged = acknowledged_events([first, second])
    assert sorted(merged) == sorted(f"e-{n}" for n in (0, 1, 2, 3, 4, 5, 8, 9))


def test_the_plan_has_every_fault_and_the_membership_changes_in_order() -> None:
    for seed in range(20):
        plan = chaos_plan(random.Random(seed))
        counts = Counter(plan)
        assert counts["kill aggregator"] == AGGREGATOR_KILLS == 10
        assert counts["kill leader"] == LEADER_KILLS == 2
        assert counts["restart postgres"] == POSTGRES_RESTARTS == 2
        assert [f for f in plan if f.startswith(("leave", "join"))] == list(MEMBERSHIP_CHANGES)
    assert chaos_plan(random.Random(1)) == chaos_plan(random.Random(1))


def test_the_faults_fall_inside_the_stream_in_order() -> None:
    moments = fault_moments(random.Random(2), 18, 100.0, 1_060.0)
    assert len(moments) == 18
    assert moments == sorted(moments)
    assert all(148.0 <= m <= 820.0 for m in moments)
    assert fault_moments(random.Random(2), 18, 100.0, 1_060.0) == moments


def _samples() -> list[Sample]:
    # Partition 0 applies steadily; partition 1 stalls from t=10 to t=14 (its member was
    # killed at t=10), then catches up; partition 2 has nothing new after t=10.
    return [
        Sample(9.5, {0: 100, 1: 100, 2: 50}, {0: 90, 1: 80, 2: 50}),
        Sample(11.0, {0: 110, 1: 110, 2: 50}, {0: 100, 1: 80, 2: 50}),
        Sample(13.0, {0: 120, 1: 120, 2: 50}, {0: 110, 1: 80, 2: 50}),
        Sample(15.0, {0: 130, 1: 130, 2: 50}, {0: 120, 1: 95, 2: 50}),
        Sample(17.0, {0: 140, 1: 140, 2: 50}, {0: 130, 1: 120, 2: 50}),
        Sample(19.0, {0: 150, 1: 150, 2: 50}, {0: 140, 1: 140, 2: 50}),
    ]


def test_recovery_times_from_the_samples() -> None:
    samples = _samples()
    # Applied at t=10 (the sample of 9.5): 90, 80, 50. Partition 1 moves past 80 at t=15.
    assert applying_again(samples, 10.0) == 5.0
    # The topic at t=10 held 100, 100, 50: partition 1 has 95 of its 100 at t=15, 120 at
    # t=17.
    assert caught_up(samples, 10.0) == 7.0
    # Nothing is known before the first sample.
    assert applying_again(samples, 9.0) is None
    # Never caught up with what the topic held at t=19 within these samples.
    assert caught_up(samples, 19.0) is None
    assert Sample(0, {0: 10, 1: 5}, {0: 4, 1: 9}).lag == 6


def test_longest_wait_for_a_202() -> None:
    attempts = [
        Attempt(0.0, 1.0, 202),
        Attempt(1.0, 2.0, 503),
        Attempt(2.0, 6.5, 0),
        Attempt(6.5, 7.0, 202),
        Attempt(7.0, 8.0, 202),
    ]
    assert longest_wait_for_202(attempts, 0.5, 10.0) == 6.0
    assert longest_wait_for_202([], 0.5, 10.0) == 9.5


def test_the_last_line() -> None:
    assert summary_line(1_000_000, 1_000_000, 0, 0, 0) == (
        "soak: 1000000 acknowledged, 1000000 counted, 0 lost, 0 doubled, 0 mismatches"
    )


def test_resident_memory_of_a_process_and_of_none() -> None:
    own = rss_mib(os.getpid())
    assert own is not None and 5 < own < 4096
    # Pids stop well below this on Linux (pid_max is at most 2**22).
    assert rss_mib(2**22 + 1) is None
