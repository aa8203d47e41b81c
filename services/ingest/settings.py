"""The ingest service's settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_events_per_request: int = Field(default=10_000, ge=1)
    # How long a request waits for the broker's acknowledgement before answering 503.
    produce_timeout_seconds: float = Field(default=10.0, gt=0)
    # Nothing waits for a batch to fill by default: while a request is in flight, the next
    # records gather into batches anyway.
    producer_linger_ms: int = Field(default=0, ge=0)

    # Dialer adapters (services/ingest/adapters, docs/adapters.md).
    # The key of the HMAC that turns a customer's phone number into a lead id. Unset, an
    # adapter refuses a record whose lead would have to be derived from a number.
    lead_id_secret: SecretStr | None = Field(default=None, min_length=16)
    # Twilio's Auth Token: every Twilio callback must be signed with it; unset, the Twilio
    # route refuses every request.
    twilio_auth_token: SecretStr | None = None
    # The URL the dialers see ingest at (e.g. https://callboard.example.com), when a proxy
    # in front rewrites it: Twilio signs the URL it requested.
    public_base_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$")
    # The zone of wall-clock times in native records (Asterisk, FreeSWITCH, VICIdial);
    # unset, the deployment's CALLBOARD_TIMEZONE.
    source_timezone: str | None = None

    @field_validator("source_timezone")
    @classmethod
    def _known_source_timezone(cls, value: str | None) -> str | None:
        return None if value is None else cls._known_timezone(value)


@lru_cache
def ingest_settings() -> IngestSettings:
    return IngestSettings()
