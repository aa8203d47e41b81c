"""docker-compose.cluster.yml describes a three-broker cluster the services can rely on."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.pipeline import REPO

BROKERS = ("kafka-1", "kafka-2", "kafka-3")
SERVICES = ("migrate", "ingest", "aggregator", "api")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.cluster.yml").read_text())
    return document


def _environment(compose: dict[str, Any], service: str) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"][service]["environment"].items()}


def test_three_kraft_nodes_form_one_quorum(compose: dict[str, Any]) -> None:
    envs = [_environment(compose, broker) for broker in BROKERS]
    assert [env["KAFKA_NODE_ID"] for env in envs] == ["1", "2", "3"]
    for env in envs:
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
            "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        )
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(",")
    assert len({env["CLUSTER_ID"] for env in envs}) == 1


def test_every_event_on_three_brokers_and_two_in_sync(compose: dict[str, Any]) -> None:
    for broker in BROKERS:
        env = _environment(compose, broker)
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"


def test_each_broker_advertises_itself_and_keeps_its_own_data(compose: dict[str, Any]) -> None:
    host_ports = []
    volumes = []
    for broker in BROKERS:
        service = compose["services"][broker]
        (published,) = service["ports"]
        host, host_port, container_port = published.split(":")
        assert (host, container_port) == ("127.0.0.1", "9094")
        advertised = _environment(compose, broker)["KAFKA_ADVERTISED_LISTENERS"].split(",")
        assert advertised == [f"INTERNAL://{broker}:9092", f"EXTERNAL://localhost:{host_port}"]
        host_ports.append(host_port)
        (volume,) = service["volumes"]
        volumes.append(volume.split(":")[0])
    assert host_ports == ["9094", "9095", "9096"]
    assert len(set(volumes)) == 3
    assert set(volumes) <= set(compose["volumes"])


def test_the_services_know_all_brokers_and_wait_for_them(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        service = compose["services"][name]
        env = _environment(compose, name)
        assert env["CALLBOARD_KAFKA_BOOTSTRAP_SERVERS"].split(",") == [
            f"{broker}:9092" for broker in BROKERS
        ]
        if name != "migrate":
            for broker in BROKERS:
                assert service["depends_on"][broker] == {"condition": "service_healthy"}
