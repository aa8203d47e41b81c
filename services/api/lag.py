"""Consumer lag of the aggregator group, per partition of the events topic.

The committed offset is the one stored in the database with the numbers (what is really
counted). Lag in seconds is the age of the oldest unprocessed event: the broker timestamp
of the record at the committed offset.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from services.api.settings import ApiSettings


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    end_offset: int
    committed_offset: int
    lag: int
    lag_seconds: float
    status: str
    last_commit_at: datetime | None


class LagReader:
    """Owns one KafkaConsumer (not thread-safe) behind a lock; every call blocks."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()

    def _get(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                client_id="callboard-api-lag",
                request_timeout_ms=5_000,
                bootstrap_timeout_ms=3_000,
                consumer_timeout_ms=1_000,
            )
        return self._consumer

    def read(self, committed: dict[int, tuple[int, datetime | None]]) -> list[PartitionLag]:
        """``committed``: partition → (next offset to apply, when it last moved)."""
        with self._lock:
            consumer = self._get()
            topic = self.settings.events_topic
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            ends: dict[Any, int] = consumer.end_offsets(tps) if tps else {}
            now = datetime.now(UTC)
            out = []
            for tp in tps:
                end = ends.get(tp, 0)
                offset, moved_at = committed.get(tp.partition, (0, None))
                lag = max(end - offset, 0)
                age = self._age_of(consumer, tp, offset, now) if lag else 0.0
                out.append(
                    PartitionLag(
                        tp.partition,
                        end,
                        offset,
                        lag,
                        age,
                        self._status(lag, age, moved_at, now),
                        moved_at,
                    )
                )
            return out

    def _age_of(
        self, consumer: KafkaConsumer, tp: TopicPartition, offset: int, now: datetime
    ) -> float:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=200, max_records=1)
            for batch in records.values():
                for record in batch:
                    age: float = (now.timestamp() * 1000 - record.timestamp) / 1000
                    return max(age, 0.0)
        # The record could not be read (compacted or broker slow): say nothing rather than 0.
        return float("nan")

    def _status(self, lag: int, age: float, moved_at: datetime | None, now: datetime) -> str:
        if lag == 0:
            return "ok"
        idle = (now - moved_at).total_seconds() if moved_at else float("inf")
        if idle > self.settings.lag_stall_seconds:
            return "stalled"
        if age != age or age > self.settings.lag_error_seconds:
            return "error"
        if age > self.settings.lag_warning_seconds:
            return "warning"
        return "ok"

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
