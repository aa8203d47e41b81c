"""The aggregator's settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.settings import CommonSettings


class AggregatorSettings(CommonSettings):
    batch_max_records: int = Field(default=5000, ge=1)
    poll_timeout_ms: int = Field(default=100, ge=1)
    fetch_max_wait_ms: int = Field(default=50, ge=0)
    # Prometheus metrics of this process; 0 turns the endpoint off.
    aggregator_metrics_port: int = Field(default=9102, ge=0, le=65535)
    aggregator_metrics_host: str = "127.0.0.1"
    # A Kafka client call (poll, commit) running this long is failed and the client replaced;
    # one still running as long again ends the process, for its supervisor to restart it.
    kafka_call_limit_seconds: float = Field(default=30.0, gt=0)
    # A member revoked this long ago and still without partitions leaves and rejoins.
    rejoin_after_seconds: float = Field(default=20.0, gt=0)
    # A systemic failure (the database, the dead-letter topic or the code refusing known-good
    # records too) is retried with backoff this long before the process gives up.
    db_retry_seconds: float = Field(default=300.0, gt=0)
    # Records that cannot be applied go here with the reason; empty: <events_topic>.dead-letters.
    dead_letters_topic: str = ""
    # Retention (services/aggregator/retention.py), run every retention_interval_seconds
    # (0: never): minute rows and call state older than these many days (0: kept) are dropped.
    # A call's state must outlive the latest event that may still arrive for it.
    retention_interval_seconds: float = Field(default=3600.0, ge=0)
    retention_minute_days: int = Field(default=92, ge=0)
    retention_call_state_days: int = Field(default=92, ge=0)
    retention_chunk_rows: int = Field(default=5000, ge=1)

    @property
    def dead_letter_topic(self) -> str:
        return self.dead_letters_topic or f"{self.events_topic}.dead-letters"


@lru_cache
def aggregator_settings() -> AggregatorSettings:
    return AggregatorSettings()
