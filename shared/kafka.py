"""Every Kafka client the project makes, built from one place with the project's defaults.

``kafka_producer``, ``kafka_consumer`` and ``kafka_admin`` take the settings (the brokers
and the optional security settings) and each caller's own overrides (timeouts, client id,
group). A tool that knows only a broker address passes it as ``bootstrap``; the security
settings still come from the environment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared.kafka_workarounds import finish_joins_in_flight
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

# Back within seconds of a broker restart (kafka-python's default waits up to 30 s).
RECONNECT_BACKOFF_MAX_MS = 2_000
# How long a command an operator types (``dead-letters``, ``rebuild``) waits for a first
# broker before saying none answers: a broker that answers at all is found within a second,
# and kafka-python's default would keep the operator waiting 30 s.
COMMAND_BOOTSTRAP_TIMEOUT_MS = 10_000


def client_config(
    settings: CommonSettings | None = None, *, bootstrap: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """The keyword arguments every client gets, then ``overrides`` on top."""
    settings = settings if settings is not None else CommonSettings()
    servers = (
        settings.bootstrap_servers
        if bootstrap is None
        else [s.strip() for s in bootstrap.split(",") if s.strip()]
    )
    config: dict[str, Any] = {
        "bootstrap_servers": servers,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        config |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": None if password is None else password.get_secret_value(),
        }
    if settings.kafka_ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return config | overrides


def kafka_producer(
    settings: CommonSettings | None = None, *, bootstrap: str | None = None, **overrides: Any
) -> KafkaProducer:
    return KafkaProducer(**client_config(settings, bootstrap=bootstrap, **overrides))


def kafka_consumer(
    settings: CommonSettings | None = None, *, bootstrap: str | None = None, **overrides: Any
) -> KafkaConsumer:
    """A consumer; one in a group also finishes the joins it starts (``kafka_workarounds``)."""
    consumer = KafkaConsumer(**client_config(settings, bootstrap=bootstrap, **overrides))
    if overrides.get("group_id") is not None:
        finish_joins_in_flight(consumer)
    return consumer


def kafka_admin(
    settings: CommonSettings | None = None, *, bootstrap: str | None = None, **overrides: Any
) -> KafkaAdminClient:
    return KafkaAdminClient(**client_config(settings, bootstrap=bootstrap, **overrides))


def ensure_topic(target: CommonSettings | Sequence[str], topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` unless it exists; never shrinks or alters it.

    ``target``: the settings, or only the brokers (tools and tests). Replicated as the
    brokers' ``default.replication.factor`` says: once on a single broker, three times on a
    three-broker cluster.
    """
    settings, bootstrap = (
        (target, None) if isinstance(target, CommonSettings) else (None, ",".join(target))
    )
    admin = kafka_admin(
        settings, bootstrap=bootstrap, request_timeout_ms=10_000, bootstrap_timeout_ms=3_000
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
