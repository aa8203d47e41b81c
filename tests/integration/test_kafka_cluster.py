"""The three-node KRaft cluster: topics replicated to all nodes, needing two in sync, and
acknowledged records surviving a killed leader and a frozen node."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import TopicPartition

from services.devstack.cluster import KafkaCluster
from services.devstack.kafka import _admin, create_topic
from tests.fixtures_infra import KAFKA_REFUSED_SOCKETS

PARTITIONS = 3

pytestmark = list(KAFKA_REFUSED_SOCKETS)


@pytest.fixture
def topic(kafka_cluster: KafkaCluster) -> str:
    name = f"cluster-{uuid.uuid4().hex[:12]}"
    # Replicated as the brokers' default says, which the cluster sets to three.
    create_topic(kafka_cluster.bootstrap_servers, name, PARTITIONS)
    kafka_cluster.wait_healthy()
    return name


@pytest.fixture
def producer(kafka_cluster: KafkaCluster) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(
        bootstrap_servers=kafka_cluster.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=15000,
        delivery_timeout_ms=60000,
        reconnect_backoff_max_ms=1000,
    )
    yield producer
    producer.close(timeout=10)


def _send_acknowledged(producer: KafkaProducer, topic: str, values: range) -> None:
    """Send values one per record and wait for every acknowledgement (acks=all)."""
    futures = [
        producer.send(topic, key=str(value).encode(), value=str(value).encode()) for value in values
    ]
    producer.flush(timeout=60)
    for future in futures:
        future.get(timeout=1)


def _read_all(cluster: KafkaCluster, topic: str) -> list[int]:
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    try:
        partitions = [TopicPartition(topic, index) for index in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        values: list[int] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "the records did not come back in time"
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(int(record.value) for record in records)
        return values
    finally:
        consumer.close()


def test_nodes_have_their_own_ports_and_processes(kafka_cluster: KafkaCluster) -> None:
    nodes = kafka_cluster.nodes
    assert [node.node_id for node in nodes] == [1, 2, 3]
    assert len({node.port for node in nodes}) == 3
    assert len({node.pid for node in nodes}) == 3
    assert all(node.pid is not None for node in nodes)
    assert kafka_cluster.bootstrap_servers == ",".join(f"127.0.0.1:{node.port}" for node in nodes)


def test_topics_are_on_all_three_nodes_and_need_two_in_sync(
    kafka_cluster: KafkaCluster, topic: str
) -> None:
    admin = _admin(kafka_cluster.bootstrap_servers, 10000)
    try:
        (described,) = admin.describe_topics([topic])
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, ["min.insync.replicas"])],
            config_filter="all",
        )
    finally:
        admin.close()
    assert sorted(entry["partition_index"] for entry in described["partitions"]) == [0, 1, 2]
    for entry in described["partitions"]:
        assert sorted(entry["replica_nodes"]) == [1, 2, 3]
        assert sorted(entry["isr_nodes"]) == [1, 2, 3]
    assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"
    leaders = {kafka_cluster.leader_of(topic, index) for index in range(PARTITIONS)}
    assert leaders <= {1, 2, 3}


def test_acknowledged_records_survive_their_leader_killed(
    kafka_cluster: KafkaCluster, topic: str, producer: KafkaProducer
) -> None:
    _send_acknowledged(producer, topic, range(0, 300))
    leader = kafka_cluster.leader_of(topic, 0)
    old_pid = kafka_cluster.node(leader).pid
    kafka_cluster.kill(leader)
    assert not kafka_cluster.node(leader).is_running()

    # Two nodes left are still min.insync.replicas: writes go on being acknowledged.
    _send_acknowledged(producer, topic, range(300, 600))
    assert kafka_cluster.leader_of(topic, 0) != leader
    assert sorted(_read_all(kafka_cluster, topic)) == list(range(600))

    kafka_cluster.restart(leader)
    kafka_cluster.wait_healthy()
    assert kafka_cluster.node(leader).pid not in (None, old_pid)
    assert sorted(_read_all(kafka_cluster, topic)) == list(range(600))


def test_a_frozen_node_is_left_behind_and_catches_up(
    kafka_cluster: KafkaCluster, topic: str, producer: KafkaProducer
) -> None:
    frozen = kafka_cluster.leader_of(topic, 1)
    pid = kafka_cluster.node(frozen).pid
    kafka_cluster.freeze(frozen)
    try:
        _send_acknowledged(producer, topic, range(0, 200))
        assert kafka_cluster.leader_of(topic, 1) != frozen
    finally:
        kafka_cluster.resume(frozen)
    kafka_cluster.wait_healthy()
    # The same process came back, not a restarted one.
    assert kafka_cluster.node(frozen).pid == pid
    assert sorted(_read_all(kafka_cluster, topic)) == list(range(200))
