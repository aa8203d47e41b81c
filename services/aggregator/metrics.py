"""Prometheus metrics of an aggregator process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

APPLIED = Counter("callboard_aggregator_events_applied_total", "Events applied to the KPI tables")
SKIPPED = Counter(
    "callboard_aggregator_events_skipped_total", "Records already applied (redelivered)"
)
REJECTED = Counter(
    "callboard_aggregator_events_rejected_total", "Records that could not be decoded"
)
# Records set aside instead of applied (undecodable ones, also counted in REJECTED, and events
# the merge or the database refused), counted once the broker acknowledged them.
DEAD_LETTERS = Counter(
    "callboard_aggregator_dead_letters_total", "Records sent to the dead-letter topic"
)
RETENTION_DELETED = Counter(
    "callboard_aggregator_retention_deleted_total",
    "Rows dropped by retention, by table",
    ["table"],
)
DB_RETRIES = Counter(
    "callboard_aggregator_db_retries_total", "Batch transactions retried after a database error"
)
HEALTHY = Gauge(
    "callboard_aggregator_healthy",
    "1 while batches apply; 0 while a systemic failure (the database or the code refusing "
    "known-good records too) holds the member back, retrying",
)
PROBES = Counter(
    "callboard_aggregator_probes_total",
    "Known-good records applied (and rolled back) to tell bad records from a systemic failure",
    ["result"],
)
REJOINS = Counter(
    "callboard_aggregator_rejoins_total", "Times a stuck rebalance made the member rejoin"
)
CLIENT_STALLS = Counter(
    "callboard_aggregator_client_stalls_total",
    "Kafka client calls that did not return in time and were failed (the client replaced)",
)
BATCH_SIZE = Histogram(
    "callboard_aggregator_batch_size",
    "Events per applied batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
TRANSACTION_SECONDS = Histogram(
    "callboard_aggregator_transaction_seconds", "Time to apply one batch in the database"
)


def observe_batch(applied: int, skipped: int, seconds: float) -> None:
    APPLIED.inc(applied)
    SKIPPED.inc(skipped)
    BATCH_SIZE.observe(applied)
    TRANSACTION_SECONDS.observe(seconds)


# Where a member's time goes, stage by stage (the bench prints them). ``lock`` is the wait for
# the partitions' stored offsets; ``load_state`` includes the wait for other members working
# on the same entities.
STAGES = ("poll", "decode", "lock", "load_state", "merge", "write", "commit")
STAGE_SECONDS = Counter(
    "callboard_aggregator_stage_seconds",
    "Seconds spent in each stage of applying batches",
    ["stage"],
)
_STAGE_COUNTERS = {name: STAGE_SECONDS.labels(name) for name in STAGES}


@contextmanager
def stage(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        _STAGE_COUNTERS[name].inc(time.perf_counter() - started)
