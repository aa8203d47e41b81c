"""The dead-letter topic: records the aggregator cannot apply, kept with the reason.

A record that cannot be decoded, or whose event the merge or the database refuses, is
produced to the dead-letter topic (``<events topic>.dead-letters`` unless the setting
``dead_letters_topic`` names another) unchanged: same key, value and headers, plus
``callboard.dlt.*`` headers saying where it came from and why. The aggregator waits for the
broker's acknowledgement inside the batch's transaction, before the commit that makes the
record's offset final: a crash in between re-delivers the record and at worst sends it
twice, never loses it.

``callboard dead-letters list`` shows them; ``callboard dead-letters replay`` produces the
ones not replayed yet back to the events topic after a fix, where each counts once like any
event (the same event id twice changes nothing). A record that still fails comes back as a
new dead letter whose ``callboard.replay_of`` header names the one it was replayed from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from services.aggregator import metrics
from services.aggregator.settings import AggregatorSettings
from shared.kafka import (
    COMMAND_BOOTSTRAP_TIMEOUT_MS,
    ensure_topic,
    kafka_consumer,
    kafka_producer,
)

log = logging.getLogger(__name__)

PREFIX = "callboard.dlt."
REASON = PREFIX + "reason"
SOURCE_TOPIC = PREFIX + "topic"
SOURCE_PARTITION = PREFIX + "partition"
SOURCE_OFFSET = PREFIX + "offset"
SOURCE_TIMESTAMP = PREFIX + "timestamp"
FAILED_AT = PREFIX + "failed_at"
GROUP = PREFIX + "group"
# On a replayed record in the events topic: the dead letter it came from (topic/partition/offset).
REPLAY_OF = "callboard.replay_of"

MAX_REASON_CHARS = 2000
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record of the events topic that will not be applied, and why."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    reason: str


class DeadLetterUnavailable(Exception):
    """The broker did not take the dead letters: the batch must not commit; it is retried."""


class DeadLetterSink(Protocol):
    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Return once every letter is durably stored, or raise DeadLetterUnavailable."""


class KafkaDeadLetters:
    """Produces dead letters with acks=all; the topic and the producer are made on first use."""

    def __init__(self, settings: AggregatorSettings) -> None:
        self.settings = settings
        self.topic = settings.dead_letter_topic
        self._producer: KafkaProducer | None = None

    def _get(self) -> KafkaProducer:
        if self._producer is None:
            # One partition: few records, read in the order they failed.
            ensure_topic(self.settings, self.topic, 1)
            self._producer = _producer(self.settings, "callboard-aggregator-dead-letters")
        return self._producer

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        failed_at = datetime.now(UTC).isoformat().encode()
        try:
            producer = self._get()
            futures = [
                producer.send(
                    self.topic,
                    key=letter.key,
                    value=letter.value,
                    headers=[*letter.headers, *self._headers(letter, failed_at)],
                )
                for letter in letters
            ]
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
        except (KafkaError, OSError) as exc:
            raise DeadLetterUnavailable(str(exc) or type(exc).__name__) from exc
        metrics.DEAD_LETTERS.inc(len(letters))
        for letter in letters:
            log.error(
                "record dead-lettered",
                extra={
                    "partition": letter.partition,
                    "offset": letter.offset,
                    "reason": letter.reason,
                    "dead_letter_topic": self.topic,
                },
            )

    def _headers(self, letter: DeadLetter, failed_at: bytes) -> list[tuple[str, bytes]]:
        return [
            (REASON, letter.reason[:MAX_REASON_CHARS].encode()),
            (SOURCE_TOPIC, self.settings.events_topic.encode()),
            (SOURCE_PARTITION, str(letter.partition).encode()),
            (SOURCE_OFFSET, str(letter.offset).encode()),
            (SOURCE_TIMESTAMP, str(letter.timestamp_ms).encode()),
            (FAILED_AT, failed_at),
            (GROUP, self.settings.group_id.encode()),
        ]

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None


def _producer(settings: AggregatorSettings, client_id: str) -> KafkaProducer:
    return kafka_producer(
        settings,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_block_ms=10_000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=30_000,
    )


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as read back from its topic."""

    partition: int
    offset: int
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    reason: str
    failed_at: str
    key: bytes | None
    value: bytes | None
    # The record's own headers, without the callboard.dlt.* ones.
    headers: Headers
    replayed: bool

    @property
    def event_id(self) -> str | None:
        try:
            event = orjson.loads(self.value or b"")
        except orjson.JSONDecodeError:
            return None
        found = event.get("event_id") if isinstance(event, dict) else None
        return found if isinstance(found, str) else None

    @property
    def replay_of(self) -> str | None:
        for name, value in self.headers:
            if name == REPLAY_OF:
                return value.decode(errors="replace")
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "dead_letter": f"{self.partition}/{self.offset}",
            "source": f"{self.source_topic}/{self.source_partition}/{self.source_offset}",
            "failed_at": self.failed_at,
            "reason": self.reason,
            "event_id": self.event_id,
            "replayed": self.replayed,
            "replay_of": self.replay_of,
            "value": (self.value or b"").decode(errors="replace"),
        }


def replay_group(settings: AggregatorSettings) -> str:
    """The consumer group whose committed offset marks how far dead letters were replayed."""
    return f"{settings.group_id}.dead-letters-replay"


def _replay_consumer(settings: AggregatorSettings) -> KafkaConsumer:
    """A consumer in the replay group; it reads the dead-letter topic from its start."""
    return kafka_consumer(
        settings,
        bootstrap_timeout_ms=COMMAND_BOOTSTRAP_TIMEOUT_MS,
        group_id=replay_group(settings),
        client_id="callboard-dead-letters",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
    )


def read_dead_letters(settings: AggregatorSettings) -> list[StoredDeadLetter]:
    """Every dead letter in the topic, oldest first; a record sent twice (a batch retried
    after its letters were stored) is listed once."""
    consumer = _replay_consumer(settings)
    try:
        partitions = consumer.partitions_for_topic(settings.dead_letter_topic)
        if not partitions:
            return []
        tps = [TopicPartition(settings.dead_letter_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        marks = {tp: _committed(consumer, tp) for tp in tps}
        consumer.seek_to_beginning(*tps)
        letters: list[StoredDeadLetter] = []
        seen: set[tuple[str, int | None, int | None]] = set()
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    letter = _stored(record, replayed=record.offset < marks[tp])
                    coordinates = (
                        letter.source_topic,
                        letter.source_partition,
                        letter.source_offset,
                    )
                    if coordinates in seen:
                        continue
                    seen.add(coordinates)
                    letters.append(letter)
        return letters
    finally:
        consumer.close()


def _committed(consumer: KafkaConsumer, tp: TopicPartition) -> int:
    committed = consumer.committed(tp)
    return int(committed) if committed is not None else 0


def _stored(record: Any, *, replayed: bool) -> StoredDeadLetter:
    ours = {k: v.decode(errors="replace") for k, v in record.headers or () if k.startswith(PREFIX)}
    own = tuple((k, v) for k, v in record.headers or () if not k.startswith(PREFIX))

    def number(name: str) -> int | None:
        text = ours.get(name)
        return int(text) if text and text.lstrip("-").isdigit() else None

    return StoredDeadLetter(
        partition=record.partition,
        offset=record.offset,
        source_topic=ours.get(SOURCE_TOPIC, ""),
        source_partition=number(SOURCE_PARTITION),
        source_offset=number(SOURCE_OFFSET),
        reason=ours.get(REASON, ""),
        failed_at=ours.get(FAILED_AT, ""),
        key=record.key,
        value=record.value,
        headers=own,
        replayed=replayed,
    )


def replay(settings: AggregatorSettings, letters: Iterable[StoredDeadLetter]) -> int:
    """Produce ``letters`` back to the events topic and mark them replayed; returns how many.

    Each goes back with its key, value and own headers, plus ``callboard.replay_of``.
    """
    chosen = list(letters)
    if not chosen:
        return 0
    producer = _producer(settings, "callboard-dead-letters-replay")
    try:
        futures = []
        for letter in chosen:
            headers = [(k, v) for k, v in letter.headers if k != REPLAY_OF]
            origin = f"{settings.dead_letter_topic}/{letter.partition}/{letter.offset}"
            headers.append((REPLAY_OF, origin.encode()))
            futures.append(
                producer.send(
                    settings.events_topic, key=letter.key, value=letter.value, headers=headers
                )
            )
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close(timeout=5)
    marks: dict[int, int] = {}
    for letter in chosen:
        marks[letter.partition] = max(marks.get(letter.partition, 0), letter.offset + 1)
    _mark_replayed(settings, marks)
    log.info("dead letters replayed", extra={"count": len(chosen)})
    return len(chosen)


def _mark_replayed(settings: AggregatorSettings, marks: dict[int, int]) -> None:
    consumer = _replay_consumer(settings)
    try:
        tps = {p: TopicPartition(settings.dead_letter_topic, p) for p in marks}
        consumer.assign(list(tps.values()))
        offsets = {
            tps[p]: OffsetAndMetadata(offset, "", -1)
            for p, offset in marks.items()
            if offset > _committed(consumer, tps[p])
        }
        if offsets:
            consumer.commit(offsets)
    finally:
        consumer.close()
