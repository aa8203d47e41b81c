"""Consumer lag of the aggregator group, and a status for each partition, judged over a
sliding window of observations the way LinkedIn's Burrow judges consumers.

What is observed, per partition of the events topic (an *observation*):

- the end offset (Kafka), the committed offset and when it last moved (the database, where
  the aggregator stores it with the numbers: what is really counted), and the offset Kafka
  holds for the group (the aggregator commits it after each database commit);
- lag = end − committed, and lag in seconds = the age of the oldest unprocessed event (the
  broker timestamp of the record at the committed offset);
- whether a live member of the consumer group is assigned the partition.

Observations are made by a sampler thread every ``CALLBOARD_LAG_SAMPLE_SECONDS`` (5) and by
every ``GET /v1/ops/lag``; the window holds those of the last ``CALLBOARD_LAG_WINDOW_SECONDS``
(60). The status of a partition, from its newest observation and its window, is the first
rule that holds:

1. ``ok`` when the lag is 0.
2. The partition is *stuck* when lag exists and the committed offset has not moved for at
   least ``CALLBOARD_LAG_STALL_SECONDS`` (60). How long is known from the window (the run
   of newest observations with lag and the same committed offset) and, without waiting
   for a window, from the data: events have waited since the later of the oldest
   unprocessed event's timestamp and the committed offset's last move.
   A stuck partition is ``stalled`` when a live group member holds it (the consumer is
   there but makes no progress: a failing database, a batch it cannot apply), and
   ``error`` when none does (the consumer stopped committing: it is gone).
3. ``warning`` when the lag is growing: the window spans at least half its length, every
   observation in it has lag, no observation has less lag than the one before, and the
   newest has more than the oldest (Burrow's rule: a consumer that commits but falls
   behind; one that has been caught up within the window is not warned about).
4. ``ok`` otherwise (lag that is shrinking or steady while offsets move).

The topic's status is the worst of its partitions': ok < warning < stalled < error.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import Engine

from services.api.operations.prometheus import (
    COMMITTED_OFFSET,
    LAG_EVENTS,
    LAG_SECONDS,
    LAG_STATUS,
)
from services.api.settings import ApiSettings
from shared.kafka import kafka_admin, kafka_consumer
from shared.models import consumer_offset
from shared.timeutil import as_utc

log = logging.getLogger(__name__)

SEVERITY = {"ok": 0, "warning": 1, "stalled": 2, "error": 3}
# Observations kept per partition, whatever the window: bounds memory under frequent calls.
MAX_OBSERVATIONS = 1000


@dataclass(frozen=True, slots=True)
class Observation:
    at: float  # epoch seconds
    end_offset: int
    committed_offset: int
    lag: int
    # Epoch seconds of the oldest unprocessed event and of the committed offset's last move.
    oldest_unprocessed_at: float | None
    last_commit_at: float | None
    owned: bool


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    end_offset: int
    committed_offset: int
    kafka_committed_offset: int | None
    lag: int
    lag_seconds: float
    status: str
    last_commit_at: datetime | None
    owned: bool


def stuck_seconds(window: Sequence[Observation]) -> float:
    """How long lag has existed with the committed offset standing still (0: it moves)."""
    newest = window[-1]
    if newest.lag == 0:
        return 0.0
    since = newest.at
    for observation in reversed(window):
        if observation.lag == 0 or observation.committed_offset != newest.committed_offset:
            break
        since = observation.at
    if newest.oldest_unprocessed_at is not None:
        waiting_since = max(newest.oldest_unprocessed_at, newest.last_commit_at or -math.inf)
        since = min(since, waiting_since)
    return max(newest.at - since, 0.0)


def evaluate(window: Sequence[Observation], window_seconds: float, stall_seconds: float) -> str:
    """The status of one partition: the rules of the module docstring, in order."""
    newest = window[-1]
    if newest.lag == 0:
        return "ok"
    if stuck_seconds(window) >= stall_seconds:
        return "stalled" if newest.owned else "error"
    oldest = window[0]
    growing = (
        newest.at - oldest.at >= window_seconds / 2
        and all(o.lag > 0 for o in window)
        and all(later.lag >= earlier.lag for earlier, later in pairwise(window))
        and newest.lag > oldest.lag
    )
    return "warning" if growing else "ok"


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=SEVERITY.__getitem__, default="ok")


class LagMonitor:
    """Observes the group's lag and keeps the windows. Blocking; one observation at a time."""

    def __init__(self, settings: ApiSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._consumer: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()
        self._windows: dict[int, deque[Observation]] = {}
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        # The topic's status at the newest observation, and when (time.time()) it was made.
        self.latest: tuple[str, float] | None = None

    # -- Kafka clients, made on first use so that the API starts while Kafka is down.

    def _kafka(self) -> tuple[KafkaConsumer, KafkaAdminClient]:
        if self._consumer is None:
            self._consumer = kafka_consumer(
                self.settings,
                group_id=None,
                enable_auto_commit=False,
                client_id="callboard-api-lag",
                request_timeout_ms=5_000,
                bootstrap_timeout_ms=3_000,
                consumer_timeout_ms=1_000,
            )
        if self._admin is None:
            self._admin = kafka_admin(
                self.settings,
                client_id="callboard-api-lag-admin",
                request_timeout_ms=5_000,
                bootstrap_timeout_ms=3_000,
            )
        return self._consumer, self._admin

    def _stored_offsets(self) -> dict[int, tuple[int, datetime | None]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                consumer_offset.select().where(
                    consumer_offset.c.topic == self.settings.events_topic
                )
            )
            return {r.partition: (r.next_offset, as_utc(r.updated_at)) for r in rows}

    def _group(self, admin: KafkaAdminClient) -> tuple[set[int], dict[int, int]]:
        """Partitions a live member holds, and the offsets Kafka has for the group."""
        group, topic = self.settings.group_id, self.settings.events_topic
        owned: set[int] = set()
        description = admin.describe_groups([group]).get(group, {})
        for member in description.get("members") or []:
            assignment = member.get("member_assignment") or {}
            for assigned in assignment.get("assigned_partitions") or []:
                if assigned.get("topic") == topic:
                    owned.update(assigned.get("partitions") or [])
        offsets = admin.list_group_offsets(group).get(group, {})
        committed = {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}
        return owned, committed

    def observe(self) -> list[PartitionLag]:
        """One observation of every partition, added to the windows, with each status."""
        stored = self._stored_offsets()
        with self._lock:
            consumer, admin = self._kafka()
            topic = self.settings.events_topic
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            ends: dict[Any, int] = consumer.end_offsets(tps) if tps else {}
            owned, kafka_committed = self._group(admin)
            now = time.time()
            out = []
            for tp in tps:
                end = ends.get(tp, 0)
                offset, moved_at = stored.get(tp.partition, (0, None))
                lag = max(end - offset, 0)
                age = self._age_of(consumer, tp, offset, now) if lag else 0.0
                observation = Observation(
                    at=now,
                    end_offset=end,
                    committed_offset=offset,
                    lag=lag,
                    oldest_unprocessed_at=None if math.isnan(age) else now - age,
                    last_commit_at=moved_at.timestamp() if moved_at else None,
                    owned=tp.partition in owned,
                )
                window = self._window(tp.partition, observation)
                status = evaluate(
                    window, self.settings.lag_window_seconds, self.settings.lag_stall_seconds
                )
                out.append(
                    PartitionLag(
                        tp.partition,
                        end,
                        offset,
                        kafka_committed.get(tp.partition),
                        lag,
                        age,
                        status,
                        moved_at,
                        observation.owned,
                    )
                )
        observe_lag(topic, out, SEVERITY)
        self.latest = (worst(p.status for p in out), now)
        return out

    def current_status(self) -> str:
        """The topic's status at the newest observation: ``error`` when it cannot be
        observed or the sampler has not managed to for three of its intervals."""
        interval = self.settings.lag_sample_seconds
        latest = self.latest
        if latest is None or interval <= 0:
            try:
                self.observe()
            except Exception:
                return "error"
            latest = self.latest
            assert latest is not None
        if time.time() - latest[1] > 3 * max(interval, 5.0):
            return "error"
        return latest[0]

    def _window(self, partition: int, observation: Observation) -> list[Observation]:
        window = self._windows.setdefault(partition, deque(maxlen=MAX_OBSERVATIONS))
        window.append(observation)
        horizon = observation.at - self.settings.lag_window_seconds
        while window and window[0].at < horizon:
            window.popleft()
        return list(window)

    def _age_of(
        self, consumer: KafkaConsumer, tp: TopicPartition, offset: int, now: float
    ) -> float:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=200, max_records=1)
            for batch in records.values():
                for record in batch:
                    age: float = now - record.timestamp / 1000
                    return max(age, 0.0)
        # The record could not be read (compacted or broker slow): say nothing rather than 0.
        return float("nan")

    # -- The sampler thread.

    def start(self) -> None:
        if self.settings.lag_sample_seconds <= 0 or self._sampler is not None:
            return
        self._sampler = threading.Thread(target=self._sample, name="lag-sampler", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.settings.lag_sample_seconds):
            try:
                self.observe()
            except Exception as exc:  # Kafka or the database down: the next round retries
                log.info("lag not observed", extra={"reason": str(exc)[:300]})

    def close(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=10)
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            if self._admin is not None:
                self._admin.close()
                self._admin = None


def observe_lag(
    topic: str, partitions: Sequence[PartitionLag], severity: Mapping[str, int]
) -> None:
    for p in partitions:
        labels = (topic, str(p.partition))
        LAG_EVENTS.labels(*labels).set(p.lag)
        LAG_SECONDS.labels(*labels).set(p.lag_seconds)
        LAG_STATUS.labels(*labels).set(severity[p.status])
        COMMITTED_OFFSET.labels(*labels).set(p.committed_offset)
