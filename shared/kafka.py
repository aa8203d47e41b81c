"""Small Kafka helpers shared by the services and the tools."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


def ensure_topic(bootstrap_servers: list[str], topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` unless it exists; never shrinks or alters it.

    Replicated as the brokers' ``default.replication.factor`` says: once on a single broker,
    three times on a three-broker cluster.
    """
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000, bootstrap_timeout_ms=3_000
    )
    try:
        if topic in admin.list_topics():
            return
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=-1)])
        log.info("topic created", extra={"topic": topic, "partitions": partitions})
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def close_in_background(close: Callable[[], object], what: str) -> None:
    """Run ``close`` (of a client let go) on a thread of its own; a failure is only logged.

    A client is let go because it stopped answering, so its close may take its full time
    limit or fail; the caller goes on with a fresh client meanwhile.
    """

    def run() -> None:
        try:
            close()
        except Exception as exc:
            log.info(
                "a kafka client let go did not close cleanly",
                extra={"client": what, "reason": repr(exc)},
            )

    threading.Thread(target=run, name=f"close-{what}", daemon=True).start()
