"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECEIVED = Counter("callboard_ingest_events_received_total", "Events received")
ACCEPTED = Counter("callboard_ingest_events_accepted_total", "Events acknowledged by Kafka")
REJECTED = Counter("callboard_ingest_events_rejected_total", "Events rejected, by field", ["field"])
PRODUCE_SECONDS = Histogram(
    "callboard_ingest_produce_seconds",
    "Time from send to the broker's acknowledgement of a request's events",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRODUCE_FAILURES = Counter(
    "callboard_ingest_produce_failures_total", "Requests answered 503 because Kafka failed"
)
