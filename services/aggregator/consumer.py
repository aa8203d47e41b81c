"""The consumer-group member: joins the group, follows its rebalances, and polls batches.

Each polled batch is put to the policy (``policy.py``), which has the applier
(``applier.py``) apply it in one transaction and decides what happens to what fails; Kafka's
committed offsets are written after the database commit, for lag monitoring only. On start
and on every rebalance the member seeks to the offsets stored in the database with the
numbers. A Kafka call that never returns is failed by the watch (``watch.py``) and the
client replaced.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from functools import partial
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError, UnknownTopicOrPartitionError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine
from tenacity import (
    RetryCallState,
    Retrying,
    retry,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
)

from services.aggregator import metrics, repository
from services.aggregator.applier import BatchApplier, Record
from services.aggregator.dead_letters import KafkaDeadLetters
from services.aggregator.failpoints import Failpoints
from services.aggregator.policy import ProcessingPolicy
from services.aggregator.settings import AggregatorSettings
from services.aggregator.watch import CallWatch, ClientStalled
from shared.db import transaction
from shared.kafka import close_in_background, ensure_topic, kafka_consumer

log = logging.getLogger(__name__)

MAX_LOGGED_REQUEST_IDS = 100
# Bytes fetched per partition per request.
FETCH_PARTITION_BYTES = 8 * 1024 * 1024


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


class AggregatorMember:
    """One member of the aggregator consumer group."""

    def __init__(
        self, engine: Engine, settings: AggregatorSettings, stop: threading.Event | None = None
    ) -> None:
        self.settings = settings
        self.dead_letters = KafkaDeadLetters(settings)
        self.applier = BatchApplier(engine, settings, self.dead_letters)
        self.rebalance_started: float | None = None
        self.stop = stop or threading.Event()
        self.policy = ProcessingPolicy(
            self.applier.probe,
            give_up_after_seconds=settings.db_retry_seconds,
            stop=self.stop,
        )
        self.watch = CallWatch(settings.kafka_call_limit_seconds)
        self.watch.start()
        self.consumer = self._join(first=True)
        self._batches = 0
        self.failpoints = Failpoints()

    def _join(self, *, first: bool = False) -> KafkaConsumer:
        """A client that joined the group; tried again while the broker does not answer.

        At start a broker that cannot be reached is an error (the process exits and says
        why); a client replaced later waits for the broker instead, until the member stops.
        """
        if first:
            return self._new_client()
        retrying = Retrying(
            retry=retry_if_exception_type((KafkaError, ClientStalled, OSError, RuntimeError)),
            wait=wait_exponential(multiplier=1, max=10),
            stop=lambda _: self.stop.is_set(),
            sleep=self._sleep,
            before_sleep=_say_join_retry,
            reraise=True,
        )
        return retrying(self._new_client)

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _new_client(self) -> KafkaConsumer:
        settings = self.settings
        consumer = kafka_consumer(
            settings,
            group_id=settings.group_id,
            client_id=f"callboard-aggregator-{os.getpid()}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max_records,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=600_000,
            # Partitions added to the topic are taken within this long (the default: 5 min).
            metadata_max_age_ms=int(settings.kafka_metadata_refresh_seconds * 1000),
        )
        try:
            consumer.subscribe([settings.events_topic], listener=_SeekToStored(self))
            with self.watch.call("topics", consumer):
                self._wait_for_topic(consumer)
        except BaseException:
            _let_go(consumer)
            raise
        return consumer

    def _replace_client(self, exc: ClientStalled) -> None:
        """A fresh client for one whose call had to be failed; the old one is let go."""
        log.error("replacing the kafka client", extra={"reason": str(exc)})
        _let_go(self.consumer)
        self._rejoin()

    def _rejoin(self) -> None:
        self.rebalance_started = None
        self.consumer = self._join()

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
        self._rejoin()

    def _wait_for_topic(self, consumer: KafkaConsumer, timeout: float = 60.0) -> None:
        """Join the group only once the subscribed topic's partitions are known.

        A member that joins before a new topic's partitions have leaders is assigned
        nothing, and may stay so until the next metadata refresh minutes later. The refresh
        comes after ``subscribe``: the group leader computes the assignment from the
        partitions the consumer knew of for its subscription, and one computed from none
        is followed by a second rebalance as soon as the metadata arrives.
        """
        topic = self.settings.events_topic
        ensure_topic(self.settings, topic, self.settings.events_partitions)

        # topics() asks the broker every time, and the coordinator takes the partitions of
        # the subscribed topics from that answer. A topic created a moment ago may not be in
        # every answer yet (UnknownTopicOrPartitionError, or no partitions).
        @retry(
            retry=retry_if_exception_type(UnknownTopicOrPartitionError)
            | retry_if_result(lambda known: not known),
            wait=wait_fixed(0.2),
            stop=stop_after_delay(timeout),
            retry_error_callback=lambda _: False,
        )
        def known() -> bool:
            return topic in consumer.topics() and bool(consumer.partitions_for_topic(topic))

        if not known():
            raise RuntimeError(f"topic {topic} has no partitions after {timeout:.0f} s")

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
        try:
            with self.watch.call("poll", self.consumer), metrics.stage("poll"):
                polled = self.consumer.poll(
                    timeout_ms=self.settings.poll_timeout_ms,
                    max_records=self.settings.batch_max_records,
                )
        except ClientStalled as exc:
            self._replace_client(exc)
            return 0
        records = [
            Record(r.partition, r.offset, r.value, r.timestamp, r.key, tuple(r.headers or ()))
            for batch in polled.values()
            for r in batch
        ]
        if not records:
            self._rejoin_if_stuck()
            return 0
        self.policy.start_batch()
        result = self.policy.apply(self.applier, records)
        request_ids = _request_ids(r for batch in polled.values() for r in batch)
        log.info(
            "batch applied",
            extra={
                "applied": result.applied,
                "skipped": result.skipped,
                "dead_lettered": result.rejected,
                "offsets": result.next_offsets,
                # The ingest requests these events came from (Kafka header request_id).
                "request_ids": request_ids[:MAX_LOGGED_REQUEST_IDS],
                "request_count": len(request_ids),
            },
        )
        self._batches += 1
        self.failpoints.crash_at("after_db_commit", self._batches)
        self._commit_kafka(result.next_offsets)
        return result.applied

    def _commit_kafka(self, next_offsets: dict[int, int]) -> None:
        offsets = {
            TopicPartition(self.settings.events_topic, p): OffsetAndMetadata(o, "", -1)
            for p, o in next_offsets.items()
        }
        try:
            with self.watch.call("commit", self.consumer):
                self.consumer.commit(offsets)
        except ClientStalled as exc:
            self._replace_client(exc)
        except Exception as exc:  # the database already holds the truth; Kafka's copy lags
            log.warning("kafka offset commit failed", extra={"reason": str(exc)})

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()

    def close(self) -> None:
        self.watch.stop()
        self.consumer.close()
        self.dead_letters.close()


def _let_go(consumer: KafkaConsumer) -> None:
    close_in_background(partial(consumer.close, autocommit=False, timeout_ms=5_000), "consumer")


def _say_join_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    log.warning(
        "cannot join the group yet; trying again",
        extra={
            "reason": str(outcome.exception() if outcome else "")[:300],
            "retry_in_seconds": state.upcoming_sleep,
        },
    )
