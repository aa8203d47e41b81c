"""The ingest service's settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_events_per_request: int = Field(default=10_000, ge=1)
    # How long a request waits for the broker's acknowledgement before answering 503.
    produce_timeout_seconds: float = Field(default=10.0, gt=0)
    producer_linger_ms: int = Field(default=2, ge=0)


@lru_cache
def ingest_settings() -> IngestSettings:
    return IngestSettings()
