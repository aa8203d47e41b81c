"""The consumer-group member: poll a batch, apply it in one transaction, then commit to Kafka.

The database is the source of truth for what was applied: each batch's offsets are stored in
the same transaction as its numbers. On start and on every rebalance the member seeks to the
stored offsets, and a batch re-delivered after a crash skips what the database already holds.
Kafka's committed offsets are written after the database commit, for lag monitoring only.

A record that cannot be applied does not hold its partition back: it goes to the dead-letter
topic with the reason (``dead_letters.py``), inside the transaction that commits its offset.
Every failure to apply is put to the policy (``policy.py``), which tells bad records from a
systemic failure. Once it blamed the records, an event the merge raises on is found by
bisecting the batch in memory; an error that escapes that guard (the database refusing a
value) makes the member bisect the batch into smaller transactions until the one record that
causes it is alone. However many records fail, the rest of the batch is applied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError, UnknownTopicOrPartitionError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine

from services.aggregator import metrics, repository
from services.aggregator.batch import BatchBuilder, BatchDelta
from services.aggregator.dead_letters import DeadLetter, DeadLetterSink, KafkaDeadLetters
from services.aggregator.facts import State, entity_key
from services.aggregator.limits import counter_out_of_range, does_not_fit
from services.aggregator.policy import Decision, ProcessingPolicy
from services.aggregator.settings import AggregatorSettings
from services.aggregator.watch import CallWatch, ClientStalled
from shared.db import transaction
from shared.dispositions import cached_dispositions
from shared.kafka import close_in_background, ensure_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """The part of a Kafka record the aggregator uses."""

    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class BatchResult:
    applied: int
    skipped: int
    # Records set aside in the dead-letter topic.
    rejected: int
    next_offsets: dict[int, int]


Pending = list[tuple[Record, dict[str, Any]]]


class BatchApplier:
    """Applies records to the database: the whole batch or nothing.

    Records that cannot be applied are set aside in ``dead_letters`` before the commit that
    makes their offsets final, so that the rest of the batch, and the partition, move on.
    """

    def __init__(
        self, engine: Engine, settings: AggregatorSettings, dead_letters: DeadLetterSink
    ) -> None:
        self.engine = engine
        self.topic = settings.events_topic
        self.builder = BatchBuilder(
            settings.zone,
            settings.effective_call_seconds,
            settings.week_start,
            cached_dispositions(settings.dispositions_file),
        )
        self.dead_letters = dead_letters
        self.after_commit: list[Callable[[BatchResult], None]] = []
        self._failpoint = _failpoint()
        self._transactions = 0

    def apply(
        self, records: list[Record], *, refuse: str | None = None, set_aside: bool = True
    ) -> BatchResult:
        """Apply ``records`` in one transaction.

        Events the merge raises on (or that lack their entity) are set aside; without
        ``set_aside`` the error is raised instead, for the policy to say whether the events or
        the system are at fault. With ``refuse``, every record not applied yet is set aside
        with that reason instead: the member found that the database refuses it.
        """
        started = time.perf_counter()
        letters: list[DeadLetter] = []
        pending: Pending = []
        with transaction(self.engine) as connection:
            claimed = repository.claim_offsets(
                connection, self.topic, (r.partition for r in records)
            )
            next_offsets: dict[int, int] = {}
            skipped = 0
            for record in records:
                if record.offset < claimed[record.partition]:
                    skipped += 1
                    continue
                next_offsets[record.partition] = max(
                    next_offsets.get(record.partition, 0), record.offset + 1
                )
                if refuse is not None:
                    letters.append(_letter(record, refuse))
                    continue
                event, reason = _decode(record)
                unfit = None if event is None else does_not_fit(event)
                if event is None:
                    letters.append(_letter(record, reason))
                elif unfit is not None:
                    letters.append(_letter(record, f"does not fit the tables: {unfit}"))
                else:
                    pending.append((record, event))
            if next_offsets:
                keys, pending = _entity_keys(pending, letters, set_aside=set_aside)
                repository.lock_entities(connection, keys)
                stored = repository.load_states(connection, keys)
                delta, pending = self._build(pending, stored, letters, set_aside=set_aside)
                # Stored before the commit that makes their offsets final.
                self.dead_letters.send(letters)
                repository.write_delta(connection, delta, self.builder)
                self._transactions += 1
                if self._failpoint == ("mid_batch", str(self._transactions)):
                    log.critical("failpoint mid_batch reached: exiting before the commit")
                    os._exit(137)
                repository.save_offsets(connection, self.topic, next_offsets)
                if pending:
                    repository.announce_commit(connection, self.topic, len(pending))
        result = BatchResult(len(pending), skipped, len(letters), next_offsets)
        metrics.observe_batch(result.applied, result.skipped, time.perf_counter() - started)
        for hook in self.after_commit:
            hook(result)
        return result

    def _build(
        self,
        pending: Pending,
        stored: dict[str, State],
        letters: list[DeadLetter],
        *,
        set_aside: bool,
    ) -> tuple[BatchDelta, Pending]:
        """The batch's delta, without the events the merge raises on (added to ``letters``)."""
        while True:
            try:
                return self._merge([event for _, event in pending], stored), pending
            except Exception as exc:
                if not set_aside:
                    raise
                poison = self._isolate(pending, stored, exc)
                if not poison:
                    raise  # every part merges alone: not one event's fault
                letters.extend(poison)
                bad = {(p.partition, p.offset) for p in poison}
                pending = [(r, e) for r, e in pending if (r.partition, r.offset) not in bad]

    def _isolate(
        self, pending: Pending, stored: dict[str, State], exc: Exception
    ) -> list[DeadLetter]:
        """Bisect ``pending`` (which raised ``exc``) down to the events that raise alone."""
        if len(pending) == 1:
            return [_letter(pending[0][0], _reason("the merge raised", exc))]
        middle = len(pending) // 2
        found: list[DeadLetter] = []
        for part in (pending[:middle], pending[middle:]):
            try:
                self._merge([event for _, event in part], stored)
            except Exception as part_exc:
                found.extend(self._isolate(part, stored, part_exc))
        return found

    def _merge(self, events: list[dict[str, Any]], stored: dict[str, State]) -> BatchDelta:
        if self._failpoint and self._failpoint[0] == "apply_error":
            for event in events:
                if str(event.get("event_id", "")).startswith(self._failpoint[1]):
                    raise RuntimeError(f"failpoint apply_error: {event['event_id']}")
        delta = self.builder.build(events, stored)
        beyond = counter_out_of_range(delta)
        if beyond is not None:
            raise OverflowError(beyond)
        return delta

    def probe(self) -> None:
        """Apply a known-good call as a batch would, read it back, and roll it all back.

        Raises what the merge or the database raise on it: then no record could be applied,
        and the failure is not the records' doing. Nothing of it stays in the database.
        """
        events = _probe_events(datetime.now(UTC))
        with self.engine.connect() as connection:
            attempt = connection.begin()
            try:
                keys = sorted({key for event in events if (key := entity_key(event))})
                repository.lock_entities(connection, keys)
                delta = self._merge(events, repository.load_states(connection, keys))
                repository.write_delta(connection, delta, self.builder)
                back = repository.load_states(connection, keys)
                if _canonical(back) != _canonical(delta.states):
                    raise RuntimeError("the probe's call did not read back as written")
            finally:
                attempt.rollback()


def _probe_events(now: datetime) -> list[dict[str, Any]]:
    """A connected call of a probe agent: every field as ingest accepts it."""
    call_id = f"callboard-probe-{uuid.uuid4().hex}"
    common = {
        "agent_id": "callboard-probe",
        "team_id": "callboard-probe",
        "campaign_id": "callboard-probe",
        "call_id": call_id,
        "lead_id": "callboard-probe",
        "direction": "outbound",
    }
    return [
        {
            **common,
            "event_id": f"{call_id}-started",
            "type": "call.started",
            "occurred_at": now.isoformat(),
        },
        {
            **common,
            "event_id": f"{call_id}-completed",
            "type": "call.completed",
            "occurred_at": now.isoformat(),
            "answered": True,
            "talk_seconds": 75,
            "disposition": "callback",
        },
    ]


def _canonical(states: dict[str, State]) -> bytes:
    return orjson.dumps(states, option=orjson.OPT_SORT_KEYS)


def _entity_keys(
    pending: Pending, letters: list[DeadLetter], *, set_aside: bool
) -> tuple[list[str], Pending]:
    """The entities the events touch; an event without one it should have is set aside."""
    keys: set[str] = set()
    kept: Pending = []
    for record, event in pending:
        try:
            key = entity_key(event)
        except Exception as exc:
            if not set_aside:
                raise
            letters.append(_letter(record, _reason("no entity", exc)))
            continue
        if key is not None:
            keys.add(key)
        kept.append((record, event))
    return sorted(keys), kept


def _reason(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"


def _letter(record: Record, reason: str) -> DeadLetter:
    return DeadLetter(
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.headers,
        record.timestamp_ms,
        reason,
    )


def _decode(record: Record) -> tuple[dict[str, Any] | None, str]:
    try:
        event = orjson.loads(record.value or b"")
        if not isinstance(event, dict) or "type" not in event or "event_id" not in event:
            raise ValueError("not an event object (an object with type and event_id)")
        return event, ""
    except (orjson.JSONDecodeError, ValueError) as exc:
        metrics.REJECTED.inc()
        return None, _reason("undecodable", exc)


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


def _failpoint() -> tuple[str, str] | None:
    """Fault injection for tests, ``CALLBOARD_FAILPOINT=name:argument``.

    ``after_db_commit:N``: die hard after the Nth batch's DB commit, before Kafka's.
    ``mid_batch:N``: die hard inside the Nth transaction, its rows written, not committed.
    ``apply_error:PREFIX``: the merge raises on events whose id starts with PREFIX, as a bug
    would.
    """
    spec = os.environ.get("CALLBOARD_FAILPOINT", "")
    if ":" not in spec:
        return None
    name, _, argument = spec.partition(":")
    return name, argument


def _finish_joins_in_flight(consumer: KafkaConsumer) -> None:
    """Make a poll always drive a started rebalance to its end.

    kafka-python (3.0.12) decides whether to go on with a rebalance by asking whether one is
    needed. When the member rebalances because the topic's partitions changed (partitions
    added, or the first assignment made before the partitions were known), the group
    leader's own assignment answers "not needed" while its SyncGroup request is still in
    flight. A poll that times out at that moment leaves the answer unread: the member keeps
    no partitions and sends no heartbeats until the broker drops it. A join in progress
    (``rejoining``, set from its start until its assignment is taken) now counts as needed.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    needed = getattr(coordinator, "need_rejoin", None)
    if coordinator is None or needed is None or not hasattr(coordinator, "rejoining"):
        log.warning("kafka client without the expected coordinator; joins are not guarded")
        return

    def need_rejoin() -> bool:
        return bool(coordinator.rejoining) or bool(needed())

    coordinator.need_rejoin = need_rejoin


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
        self._failpoint = _failpoint()

    def _join(self, *, first: bool = False) -> KafkaConsumer:
        """A client that joined the group; tried again while the broker does not answer.

        At start a broker that cannot be reached is an error (the process exits and says
        why); a client replaced later waits for the broker instead, until the member stops.
        """
        delay = 1.0
        while True:
            try:
                return self._new_client()
            except (KafkaError, ClientStalled, OSError, RuntimeError) as exc:
                if first or self.stop.is_set():
                    raise
                log.warning(
                    "cannot join the group yet; trying again",
                    extra={"reason": str(exc)[:300], "retry_in_seconds": delay},
                )
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _new_client(self) -> KafkaConsumer:
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
            # Back within seconds of a broker restart (the default waits up to 30 s).
            reconnect_backoff_max_ms=2_000,
            # Partitions added to the topic are taken within this long (the default: 5 min).
            metadata_max_age_ms=int(settings.kafka_metadata_refresh_seconds * 1000),
        )
        try:
            _finish_joins_in_flight(consumer)
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
        ensure_topic(self.settings.bootstrap_servers, topic, self.settings.events_partitions)
        deadline = time.monotonic() + timeout
        # topics() asks the broker every time, and the coordinator takes the partitions of
        # the subscribed topics from that answer.
        while True:
            try:
                if topic in consumer.topics() and consumer.partitions_for_topic(topic):
                    return
            except UnknownTopicOrPartitionError:
                # A topic created a moment ago may not be in every answer yet.
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions after {timeout:.0f} s")
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
        try:
            with self.watch.call("poll", self.consumer):
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
        result = self._apply(records)
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
        if self._failpoint == ("after_db_commit", str(self._batches)):
            log.critical("failpoint after_db_commit reached: exiting without Kafka commit")
            os._exit(137)
        self._commit_kafka(result.next_offsets)
        return result.applied

    def _apply(self, records: list[Record]) -> BatchResult:
        """Apply ``records``, putting every failure to the policy.

        Retried as they are while the system fails; once the records are blamed, applied
        again setting aside the events the merge raises on, and when an error still escapes
        (the database refused a value), each half applied on its own, down to the one record
        to set aside.
        """
        set_aside = False
        refuse: str | None = None
        while True:
            setting_aside = set_aside or self.policy.records_at_fault
            try:
                result = self.applier.apply(records, refuse=refuse, set_aside=setting_aside)
            except Exception as exc:
                decision = self.policy.decide(exc)
                if decision is Decision.STOP:
                    raise
                if decision is Decision.RETRY:
                    self.policy.wait()
                    continue
                if not setting_aside:
                    set_aside = True
                    continue
                if refuse is not None:
                    raise  # setting the record aside failed: not the record's doing
                if len(records) == 1:
                    refuse = _reason("not applied", exc)
                    continue
                log.warning(
                    "batch not applied; bisecting it",
                    extra={"records": len(records), "reason": _reason("error", exc)[:300]},
                )
                break
            self.policy.succeeded()
            return result
        middle = len(records) // 2
        first = self._apply(records[:middle])
        second = self._apply(records[middle:])
        return BatchResult(
            first.applied + second.applied,
            first.skipped + second.skipped,
            first.rejected + second.rejected,
            first.next_offsets | second.next_offsets,
        )

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
