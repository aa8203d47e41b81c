"""A 202 survives the broker that led its partition: the pipeline on a three-broker cluster.

The events topic is replicated to all three KRaft nodes and needs two in sync, ingest sends
with acks=all. Each scenario streams a floor through ingest (a dialer that retries 503s with
the same event ids) while brokers are SIGKILLed, frozen with SIGSTOP or lost for good, and
ends by comparing every KPI with the independent reference over exactly the events that got
a 202, and the event ids applied with the ids acknowledged. Figures go to the fault report.

The scenarios share one cluster of the session's own (the ``kafka_cluster`` fixture brings
back whatever node a scenario left down before the next one begins).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from devstack.cluster import KafkaCluster
from tests.conftest import new_topic
from tests.fault_report import FaultReport
from tests.faults import (
    ZONE,
    Attempt,
    Dialer,
    applied_total,
    assert_exact,
    check_exactly_once,
    finish,
    ingest_url,
    report_scenario,
    wait_progress,
)
from tests.fixtures_infra import KAFKA_REFUSED_SOCKETS
from tests.floor import Floor, generate_floor
from tests.pipeline import Pipeline

pytestmark = [*KAFKA_REFUSED_SOCKETS]

# A produce waits this long for acks=all before ingest answers 503.
PRODUCE_TIMEOUT = {"CALLBOARD_PRODUCE_TIMEOUT_SECONDS": "6"}


def _day(n: int) -> datetime:
    return datetime(2026, 11, n, 9, 0, tzinfo=ZONE)


@pytest.fixture
def pipeline(
    kafka_cluster: KafkaCluster, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """The services on the cluster, with an events topic of their own (replicated three times)."""
    topic = new_topic(kafka_cluster.bootstrap_servers)
    kafka_cluster.wait_healthy()
    with Pipeline(
        bootstrap_servers=kafka_cluster.bootstrap_servers,
        database_url=database_url,
        topic=topic,
        workdir=tmp_path_factory.mktemp("cluster-pipeline"),
        extra_env=PRODUCE_TIMEOUT,
    ) as pipeline:
        yield pipeline


def _posting(
    pipeline: Pipeline, seed: int, day: datetime, *, calls_per_agent: int, seconds: float
) -> tuple[Floor, Dialer]:
    """A floor's dialer posting for about ``seconds``, once the aggregator applies them."""
    floor = generate_floor(seed, start=day, calls_per_agent=calls_per_agent)
    dialer = Dialer(ingest_url(pipeline), floor.events, seconds=seconds)
    dialer.start()
    wait_progress(pipeline, 0)
    return floor, dialer


def _busiest_partitions(pipeline: Pipeline) -> list[int]:
    """The topic's partitions, the one holding most records first."""
    ends = pipeline.end_offsets()
    return sorted(ends, key=lambda partition: (-ends[partition], partition))


def _distinct(events: list[dict[str, Any]]) -> str:
    return f"{len(events)} events ({len({e['event_id'] for e in events})} distinct ids)"


def _first_202_after(attempts: list[Attempt], moment: float) -> float:
    """Seconds from ``moment`` until a request begun after it was answered 202."""
    return min(a.ended for a in attempts if a.status == 202 and a.started >= moment) - moment


def _new_leader(cluster: KafkaCluster, topic: str, partition: int, gone: int) -> float:
    """Seconds until a node other than ``gone`` leads the partition."""
    started = time.monotonic()
    while cluster.leader_of(topic, partition) == gone:
        assert time.monotonic() - started < 60, f"node {gone} still leads {topic}[{partition}]"
        time.sleep(0.2)
    return time.monotonic() - started


def _answers(attempts: list[Attempt], start: float, end: float) -> dict[int, int]:
    """How many requests begun and answered within ``[start, end]`` got each status."""
    counts: dict[int, int] = {}
    for attempt in attempts:
        if start <= attempt.started and attempt.ended <= end:
            counts[attempt.status] = counts.get(attempt.status, 0) + 1
    return dict(sorted(counts.items()))


def test_partition_leaders_killed_while_dialers_post(
    kafka_cluster: KafkaCluster, pipeline: Pipeline, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    # Long enough to post through both kills: a killed node takes 20-40 s to be back in sync
    # on a loaded machine, and only then may the second one go.
    floor, dialer = _posting(pipeline, 601, _day(20), calls_per_agent=80, seconds=70)
    victims: list[int] = []
    kills: list[str] = []
    moments: list[float] = []
    for _ in range(2):
        time.sleep(2)
        assert dialer.is_alive(), "the dialer finished before the kill"
        # The busiest partition whose leader was not killed before: two different brokers.
        partition, victim = next(
            (p, leader)
            for p in _busiest_partitions(pipeline)
            if (leader := kafka_cluster.leader_of(pipeline.topic, p)) not in victims
        )
        killed = time.monotonic()
        kafka_cluster.kill(victim)
        elected = _new_leader(kafka_cluster, pipeline.topic, partition, victim)
        victims.append(victim)
        moments.append(killed)
        kafka_cluster.restart(victim)
        kafka_cluster.wait_healthy()
        kills.append(
            f"node {victim} (leader of partition {partition}) SIGKILLed, new leader in "
            f"{elected:.1f} s, back in sync {time.monotonic() - killed:.1f} s after the kill"
        )
    finish(dialer)
    drained = pipeline.wait_caught_up(timeout=180)

    check = check_exactly_once(pipeline, dialer.acknowledged)
    back = [_first_202_after(dialer.attempts, moment) for moment in moments]
    report_scenario(
        fault_report,
        "cluster: partition leader killed x2",
        started,
        len(dialer.acknowledged),
        check,
        faults=(
            f"posted {_distinct(floor.events)}; " + "; ".join(kills) + f"; lost {check.lost}, "
            f"doubled {check.doubled}"
        ),
        recovery=(
            "ingest 202 again "
            + ", ".join(f"{b:.1f}" for b in back)
            + f" s after each kill; backlog drained {drained:.1f} s after the stream ended"
        ),
    )
    assert victims[0] != victims[1]
    assert_exact(check, pipeline)


def test_broker_frozen_and_resumed(
    kafka_cluster: KafkaCluster, pipeline: Pipeline, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    floor, dialer = _posting(pipeline, 602, _day(21), calls_per_agent=70, seconds=30)
    time.sleep(3)
    partition = _busiest_partitions(pipeline)[0]
    frozen = kafka_cluster.leader_of(pipeline.topic, partition)
    freezing = time.monotonic()
    kafka_cluster.freeze(frozen)
    elected = _new_leader(kafka_cluster, pipeline.topic, partition, frozen)
    time.sleep(max(0.0, 20 - (time.monotonic() - freezing)))
    resuming = time.monotonic()
    kafka_cluster.resume(frozen)
    kafka_cluster.wait_healthy()
    in_sync = time.monotonic() - resuming
    finish(dialer)
    drained = pipeline.wait_caught_up(timeout=180)

    check = check_exactly_once(pipeline, dialer.acknowledged)
    during = _answers(dialer.attempts, freezing, resuming)
    report_scenario(
        fault_report,
        "cluster: broker frozen 20 s",
        started,
        len(dialer.acknowledged),
        check,
        faults=(
            f"posted {_distinct(floor.events)}; node {frozen} (leader of partition "
            f"{partition}) SIGSTOPped {resuming - freezing:.1f} s, new leader in "
            f"{elected:.1f} s; answers within the freeze {during}; lost {check.lost}, "
            f"doubled {check.doubled}"
        ),
        recovery=(
            f"ingest 202 again {_first_202_after(dialer.attempts, freezing):.1f} s after "
            f"the freeze began; node back in sync {in_sync:.1f} s after SIGCONT; backlog "
            f"drained {drained:.1f} s after the stream ended"
        ),
    )
    # A frozen node still accepts connections and then answers nothing, so a client that
    # bootstraps from it waits out its timeouts: requests may get 503 for as long as the
    # freeze lasts, but never an error of any other kind, and nothing acknowledged is lost.
    assert set(during) <= {202, 503}, during
    assert_exact(check, pipeline)


def test_broker_lost_for_good_then_below_min_insync(
    kafka_cluster: KafkaCluster, pipeline: Pipeline, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    floor, dialer = _posting(pipeline, 603, _day(22), calls_per_agent=80, seconds=45)
    time.sleep(2)
    partitions = _busiest_partitions(pipeline)
    lost = kafka_cluster.leader_of(pipeline.topic, partitions[0])
    losing = time.monotonic()
    kafka_cluster.kill(lost)
    for partition in partitions:
        _new_leader(kafka_cluster, pipeline.topic, partition, lost)
    failed_over = time.monotonic()
    # Two nodes are min.insync.replicas: posting goes on.
    time.sleep(5)
    with_two = _answers(dialer.attempts, failed_over, time.monotonic())

    second = next(node.node_id for node in kafka_cluster.nodes if node.is_running())
    before = applied_total(pipeline)
    below = time.monotonic()
    kafka_cluster.kill(second)
    # A dialer of its own posts from the moment the cluster is below min ISR, whether or not
    # the floor's stream is still going on a slow machine; it retries until acknowledged.
    probe = generate_floor(604, start=_day(23), teams=1, agents_per_team=2, calls_per_agent=10)
    prober = Dialer(ingest_url(pipeline), probe.events, batch=10, seconds=1)
    prober.start()
    time.sleep(10)
    returning = time.monotonic()
    kafka_cluster.restart(second)
    returned = time.monotonic()
    wait_progress(pipeline, before)
    finish(dialer)
    finish(prober)
    drained = pipeline.wait_caught_up(timeout=240)

    # No request wholly below min ISR may get a 202; each answer that was not a 202
    # from the second kill until the broker was back must be 503.
    attempts = dialer.attempts + prober.attempts
    within = _answers(attempts, below, returning)
    answered_below = [a for a in attempts if below <= a.ended <= returned and a.status != 202]
    acknowledged = {**dialer.acknowledged, **prober.acknowledged}
    check = check_exactly_once(pipeline, acknowledged)
    report_scenario(
        fault_report,
        "cluster: broker lost, then below min ISR",
        started,
        len(acknowledged),
        check,
        faults=(
            f"posted {_distinct(floor.events + probe.events)}; node {lost} SIGKILLed for good, all "
            f"partitions led elsewhere {failed_over - losing:.1f} s later, answers with two "
            f"nodes {with_two}; node {second} SIGKILLed too, {returning - below:.1f} s "
            f"below min ISR: answers {within}; lost {check.lost}, doubled {check.doubled}"
        ),
        recovery=(
            f"node {second} back in {returned - returning:.1f} s; ingest 202 again "
            f"{_first_202_after(attempts, returning):.1f} s after its restart "
            f"began; backlog drained {drained:.1f} s after the stream ended"
        ),
    )
    assert with_two.get(202, 0) > 0, with_two
    assert within.get(202, 0) == 0, within
    assert within.get(503, 0) > 0, within
    assert {a.status for a in answered_below} <= {503}, answered_below
    # Each request gets the produce timeout as a whole, however many batches wait with it.
    limit = float(PRODUCE_TIMEOUT["CALLBOARD_PRODUCE_TIMEOUT_SECONDS"]) + 2
    slow = [
        a
        for a in attempts
        if below <= a.started <= returning - limit and a.ended - a.started > limit
    ]
    assert not slow, slow
    assert_exact(check, pipeline)
