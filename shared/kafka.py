"""Small Kafka helpers shared by the services and the tools."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


def ensure_topic(bootstrap_servers: list[str], topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` unless it exists; never shrinks or alters it."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000, bootstrap_timeout_ms=3_000
    )
    try:
        if topic in admin.list_topics():
            return
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        log.info("topic created", extra={"topic": topic, "partitions": partitions})
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
