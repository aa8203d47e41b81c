"""The test infrastructure itself: a real broker and database answer as the suite expects.

These run first in spirit: when they fail, every pipeline test would fail for the same
reason, and these say so plainly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from services.devstack.cluster import KafkaCluster
from services.devstack.kafka import KafkaBroker, create_topic
from services.devstack.postgres import PostgresCluster
from services.devstack.processes import free_port, port_in_use
from tests.pipeline import REPO

pytestmark = pytest.mark.pipeline


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _produce(bootstrap: str, topic: str, count: int, partitions: int) -> dict[int, int]:
    """Send count messages round-robin over the partitions; return messages per partition."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(
                topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions
            )
            for i in range(count)
        ]
        producer.flush(timeout=30)
        per_partition: dict[int, int] = {}
        for future in futures:
            metadata = future.get(timeout=30)
            per_partition[metadata.partition] = per_partition.get(metadata.partition, 0) + 1
        return per_partition
    finally:
        producer.close(timeout=10)


def _consume_all(bootstrap: str, topic: str, count: int, group: str) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
    finally:
        consumer.close()
    return values


def test_topic_with_three_partitions_round_trips_messages_with_acks_all(
    kafka_bootstrap_servers: str,
) -> None:
    topic = _unique("devstack")
    create_topic(kafka_bootstrap_servers, topic, partitions=3)

    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap_servers)
    try:
        assert probe.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        probe.close()

    assert _produce(kafka_bootstrap_servers, topic, count=30, partitions=3) == {0: 10, 1: 10, 2: 10}
    values = _consume_all(kafka_bootstrap_servers, topic, count=30, group=_unique("group"))
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(30))


def test_database_url_connects_with_sqlalchemy(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_local_broker_restarts_on_its_storage(
    kafka_broker: KafkaBroker | None, kafka_bootstrap_servers: str
) -> None:
    if kafka_broker is None:
        pytest.skip("the broker was not started by this session, so it cannot be restarted")
    topic = _unique("restart")
    create_topic(kafka_bootstrap_servers, topic, partitions=3)
    _produce(kafka_bootstrap_servers, topic, count=6, partitions=3)

    kafka_broker.restart()

    assert kafka_broker.is_running()
    values = _consume_all(kafka_bootstrap_servers, topic, count=6, group=_unique("group"))
    assert len(values) == 6
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap_servers)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])
    finally:
        consumer.close()
    assert sum(ends.values()) == 6


def test_local_cluster_restarts_on_its_data(
    postgres_cluster: PostgresCluster | None, postgres_url: str
) -> None:
    if postgres_cluster is None:
        pytest.skip("the database was not started by this session, so it cannot be restarted")
    schema = _unique("devstack").replace("-", "_")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"create schema {schema}"))
            connection.execute(sa.text(f"create table {schema}.kept (n int)"))
            connection.execute(sa.text(f"insert into {schema}.kept values (42)"))
        engine.dispose()

        postgres_cluster.stop()
        assert not postgres_cluster.is_running()
        postgres_cluster.start()

        with engine.begin() as connection:
            assert connection.execute(sa.text(f"select n from {schema}.kept")).scalar_one() == 42
            connection.execute(sa.text(f"drop schema {schema} cascade"))
    finally:
        engine.dispose()


def _three_free_ports() -> int:
    """A port p with p, p + 1 and p + 2 free: where a three-broker stack listens."""
    for _ in range(100):
        first = free_port()
        if first + 2 < 65536 and not any(port_in_use(first + i) for i in (1, 2)):
            return first
    raise AssertionError("no three free ports in a row")


def test_infra_up_runs_three_brokers_and_remembers_them(tmp_path: Path) -> None:
    state_dir = tmp_path / ".callboard"
    first = _three_free_ports()

    def callboard(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "infra", *args, "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, **env},
            timeout=300,
            check=False,
        )

    up = callboard(
        "up",
        "--kafka-port",
        str(first),
        "--postgres-port",
        str(free_port()),
        CALLBOARD_DEV_KAFKA_BROKERS="3",
    )
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        bootstrap = f"127.0.0.1:{first},127.0.0.1:{first + 1},127.0.0.1:{first + 2}"
        assert f"export CALLBOARD_KAFKA_BOOTSTRAP_SERVERS={bootstrap}" in up.stdout.splitlines()

        topic = _unique("cluster")
        create_topic(bootstrap, topic, partitions=3)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            (described,) = admin.describe_topics([topic])
        finally:
            admin.close()
        assert [sorted(p["replica_nodes"]) for p in described["partitions"]] == [[1, 2, 3]] * 3
        assert _produce(bootstrap, topic, count=30, partitions=3) == {0: 10, 1: 10, 2: 10}

        # Without the setting, later commands act on the brokers the last `up` started.
        status = callboard("status")
        assert status.returncode == 0, status.stderr
        for node in ("kafka-1", "kafka-2", "kafka-3"):
            assert node in status.stderr
    finally:
        down = callboard("down")
    assert down.returncode == 0, down.stderr
    assert not KafkaCluster(state_dir / "kafka-cluster").is_running()
