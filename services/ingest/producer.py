"""The Kafka side of ingest: an idempotent producer that waits for every acknowledgement.

kafka-python is synchronous, so these methods block; the routes call them in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache, partial

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.partitioner.default import murmur2

from services.ingest import metrics
from services.ingest.settings import IngestSettings
from shared.kafka import close_in_background, ensure_topic, kafka_admin, kafka_producer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@lru_cache(maxsize=65536)
def partition_for(key: bytes, partitions: int) -> int:
    """The Java client's default partition for ``key``; keys (agents) repeat, so cache it."""
    index: int = murmur2(key) & 0x7FFFFFFF
    return index % partitions


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class BrokerUnavailable(Exception):
    """The broker did not acknowledge every message in time."""


class EventProducer:
    """Created lazily, so the service starts (and answers 503) while Kafka is down."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()

    def _get(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                ensure_topic(
                    self.settings,
                    self.settings.events_topic,
                    self.settings.events_partitions,
                )
                self._producer = kafka_producer(
                    self.settings,
                    client_id="callboard-ingest",
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=self.settings.producer_linger_ms,
                    batch_size=256 * 1024,
                    max_block_ms=3_000,
                    bootstrap_timeout_ms=3_000,
                    request_timeout_ms=5_000,
                    delivery_timeout_ms=int(self.settings.produce_timeout_seconds * 1000),
                    retry_backoff_ms=100,
                    # Back within seconds of a broker restart (the default waits up to 30 s).
                    reconnect_backoff_max_ms=2_000,
                    # Partitions added to the topic get events within this long.
                    metadata_max_age_ms=int(self.settings.kafka_metadata_refresh_seconds * 1000),
                )
            return self._producer

    def send_all(self, messages: list[Message]) -> None:
        """Send and wait until the broker acknowledged all of ``messages``, or raise.

        The whole request, its turn to append included, gets ``produce_timeout_seconds``:
        past it the request fails, however many records or other requests wait with it.
        """
        started = time.perf_counter()
        timeout = self.settings.produce_timeout_seconds
        deadline = time.monotonic() + timeout
        producer: KafkaProducer | None = None
        try:
            producer = self._get()
            topic = self.settings.events_topic
            partitions = len(producer.partitions_for(topic))
            # One request's records at a time: concurrent requests appending to the same
            # partitions' batches take turns on their locks record by record, which costs
            # more than letting each request append all of its records in one go.
            if not self._send_lock.acquire(timeout=_remaining(deadline)):
                raise KafkaTimeoutError(f"no turn to append within {timeout} s")
            try:
                futures = [
                    producer.send(
                        topic,
                        key=m.key,
                        value=m.value,
                        headers=m.headers,
                        partition=partition_for(m.key, partitions),
                    )
                    for m in messages
                ]
            finally:
                self._send_lock.release()
            # No flush: it would wait for every request's records too, each batch with the
            # full timeout of its own. The sender takes the records after the linger (none by
            # default), as flush would have had it take them at once.
            for future in futures:
                future.get(timeout=_remaining(deadline))
        except (KafkaError, OSError) as exc:
            metrics.PRODUCE_FAILURES.inc()
            log.warning("produce failed", extra={"reason": repr(exc)})
            self._discard(producer)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

    def _discard(self, producer: KafkaProducer | None) -> None:
        """Let a producer that failed go; the next request starts a fresh one.

        A failed send can leave kafka-python's producer unable to reach the broker even
        after the broker is back (seen after broker restarts: every later send timed out).
        A fresh producer costs one connection; while the broker is down, starting one fails
        fast and the request is answered 503 as before. Sends still in flight on the old one
        finish or fail within its close.
        """
        if producer is None:
            return
        close = partial(producer.close, timeout=10)
        with self._lock:
            if self._producer is producer:
                self._producer = None
        close_in_background(close, "producer")

    def ready(self) -> bool:
        """The broker answers now and has the events topic.

        Asked of the broker itself: the producer's cached metadata would still say yes for
        a while after the broker went away.
        """
        try:
            self._get()
            admin = kafka_admin(
                self.settings,
                request_timeout_ms=2_000,
                bootstrap_timeout_ms=2_000,
            )
            try:
                return self.settings.events_topic in admin.list_topics()
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            log.info("kafka not ready", extra={"reason": repr(exc)})
            return False

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
