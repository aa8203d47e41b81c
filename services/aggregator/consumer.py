"""The consumer-group member: poll a batch, apply it in one transaction, then commit to Kafka.

The database is the source of truth for what was applied: each batch's offsets are stored in
the same transaction as its numbers. On start and on every rebalance the member seeks to the
stored offsets, and a batch re-delivered after a crash skips what the database already holds.
Kafka's committed offsets are written after the database commit, for lag monitoring only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from services.aggregator import metrics, repository
from services.aggregator.batch import BatchBuilder, entity_keys
from services.aggregator.settings import AggregatorSettings
from shared.db import transaction
from shared.kafka import ensure_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """The part of a Kafka record the aggregator uses."""

    partition: int
    offset: int
    value: bytes
    timestamp_ms: int = 0


@dataclass(slots=True)
class BatchResult:
    applied: int
    skipped: int
    rejected: int
    next_offsets: dict[int, int]


class BatchApplier:
    """Applies records to the database: the whole batch or nothing."""

    def __init__(self, engine: Engine, settings: AggregatorSettings) -> None:
        self.engine = engine
        self.topic = settings.events_topic
        self.builder = BatchBuilder(
            settings.zone, settings.effective_call_seconds, settings.week_start
        )
        self.after_commit: list[Callable[[BatchResult], None]] = []

    def apply(self, records: list[Record]) -> BatchResult:
        started = time.perf_counter()
        with transaction(self.engine) as connection:
            claimed = repository.claim_offsets(
                connection, self.topic, (r.partition for r in records)
            )
            events: list[dict[str, Any]] = []
            next_offsets: dict[int, int] = {}
            skipped = rejected = 0
            for record in records:
                if record.offset < claimed[record.partition]:
                    skipped += 1
                    continue
                next_offsets[record.partition] = max(
                    next_offsets.get(record.partition, 0), record.offset + 1
                )
                event = _decode(record)
                if event is None:
                    rejected += 1
                else:
                    events.append(event)
            if next_offsets:
                keys = entity_keys(events)
                repository.lock_entities(connection, keys)
                stored = repository.load_states(connection, keys)
                delta = self.builder.build(events, stored)
                repository.write_delta(connection, delta, self.builder)
                repository.save_offsets(connection, self.topic, next_offsets)
                if events:
                    repository.announce_commit(connection, self.topic, len(events))
        result = BatchResult(len(events), skipped, rejected, next_offsets)
        metrics.observe_batch(result.applied, result.skipped, time.perf_counter() - started)
        for hook in self.after_commit:
            hook(result)
        return result


def _decode(record: Record) -> dict[str, Any] | None:
    try:
        event = orjson.loads(record.value)
        if not isinstance(event, dict) or "type" not in event or "event_id" not in event:
            raise ValueError("not an event object")
        return event
    except (orjson.JSONDecodeError, ValueError) as exc:
        log.error(
            "undecodable record skipped",
            extra={"partition": record.partition, "offset": record.offset, "reason": str(exc)},
        )
        metrics.REJECTED.inc()
        return None


MAX_LOGGED_REQUEST_IDS = 100


def _request_ids(records: Iterable[Any]) -> list[str]:
    """The distinct ``request_id`` headers of ``records``, in order of first appearance."""
    seen: dict[str, None] = {}
    for record in records:
        for key, value in record.headers or ():
            if key == "request_id" and value:
                seen.setdefault(value.decode(errors="replace"), None)
    return list(seen)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: AggregatorMember) -> None:
        self.member = member

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.member.rebalance_started = time.monotonic()
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.member.rebalance_started = None
        self.member.seek_to_stored(list(assigned))


def _failpoint() -> tuple[str, int] | None:
    """``CALLBOARD_FAILPOINT=after_db_commit:N``: die hard after the Nth batch's DB commit."""
    spec = os.environ.get("CALLBOARD_FAILPOINT", "")
    if ":" not in spec:
        return None
    name, _, count = spec.partition(":")
    return name, int(count)


class AggregatorMember:
    """One member of the aggregator consumer group."""

    def __init__(self, engine: Engine, settings: AggregatorSettings) -> None:
        self.settings = settings
        self.applier = BatchApplier(engine, settings)
        self.rebalance_started: float | None = None
        self.consumer = self._join()
        self._batches = 0
        self._failpoint = _failpoint()

    def _join(self) -> KafkaConsumer:
        settings = self.settings
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id,
            client_id=f"callboard-aggregator-{os.getpid()}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max_records,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=600_000,
        )
        self._wait_for_topic(consumer)
        consumer.subscribe([settings.events_topic], listener=_SeekToStored(self))
        return consumer

    def _rejoin_if_stuck(self) -> None:
        """Leave and join the group again when a rebalance never completes.

        The group protocol finishes a rebalance within a few heartbeats; a member left
        without partitions long after its revocation would hold its partitions' events back
        indefinitely. Idle members of a settled group are not affected: they are never
        revoked.
        """
        started = self.rebalance_started
        if started is None or time.monotonic() - started < self.settings.rejoin_after_seconds:
            return
        log.error(
            "rebalance did not complete; leaving and joining the group again",
            extra={"waited_seconds": round(time.monotonic() - started, 1)},
        )
        metrics.REJOINS.inc()
        self.consumer.close()
        self.rebalance_started = None
        self.consumer = self._join()

    def _wait_for_topic(self, consumer: KafkaConsumer, timeout: float = 60.0) -> None:
        """Join the group only once the topic's partitions are known.

        A member that joins before a new topic's partitions have leaders is assigned
        nothing, and may stay so until the next metadata refresh minutes later.
        """
        topic = self.settings.events_topic
        ensure_topic(self.settings.bootstrap_servers, topic, self.settings.events_partitions)
        deadline = time.monotonic() + timeout
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions after {timeout:.0f} s")
            consumer.topics()  # refreshes the metadata
            time.sleep(0.2)

    def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        with transaction(self.applier.engine) as connection:
            stored = repository.stored_offsets(connection, self.settings.events_topic)
        for tp in assigned:
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
            else:
                self.consumer.seek_to_beginning(tp)
        log.info(
            "partitions assigned",
            extra={"partitions": {tp.partition: stored.get(tp.partition, 0) for tp in assigned}},
        )

    def poll_once(self) -> int:
        polled = self.consumer.poll(
            timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.batch_max_records
        )
        records = [
            Record(r.partition, r.offset, r.value, r.timestamp)
            for batch in polled.values()
            for r in batch
        ]
        if not records:
            self._rejoin_if_stuck()
            return 0
        result = self._apply_with_retry(records)
        request_ids = _request_ids(r for batch in polled.values() for r in batch)
        log.info(
            "batch applied",
            extra={
                "applied": result.applied,
                "skipped": result.skipped,
                "offsets": result.next_offsets,
                # The ingest requests these events came from (Kafka header request_id).
                "request_ids": request_ids[:MAX_LOGGED_REQUEST_IDS],
                "request_count": len(request_ids),
            },
        )
        self._batches += 1
        if self._failpoint == ("after_db_commit", self._batches):
            log.critical("failpoint after_db_commit reached: exiting without Kafka commit")
            os._exit(137)
        self._commit_kafka(result.next_offsets)
        return result.applied

    def _apply_with_retry(self, records: list[Record]) -> BatchResult:
        deadline = time.monotonic() + self.settings.db_retry_seconds
        delay = 0.2
        while True:
            try:
                return self.applier.apply(records)
            except (OperationalError, DBAPIError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("batch not applied, retrying", extra={"reason": str(exc)[:300]})
                metrics.DB_RETRIES.inc()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _commit_kafka(self, next_offsets: dict[int, int]) -> None:
        offsets = {
            TopicPartition(self.settings.events_topic, p): OffsetAndMetadata(o, "", -1)
            for p, o in next_offsets.items()
        }
        try:
            self.consumer.commit(offsets)
        except Exception as exc:  # the database already holds the truth; Kafka's copy lags
            log.warning("kafka offset commit failed", extra={"reason": str(exc)})

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()

    def close(self) -> None:
        self.consumer.close()
