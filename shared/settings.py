"""Settings read from the environment, all under the ``CALLBOARD_`` prefix.

One class holds what every service needs (Kafka, database, time zone, money); each service
extends it with its own. A bad value fails at start with pydantic's message naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.dispositions import load_dispositions

DEFAULT_DATABASE_URL = "sqlite:///./callboard.db"


class CommonSettings(BaseSettings):
    """What the three services share."""

    model_config = SettingsConfigDict(
        env_prefix="CALLBOARD_", env_file=".env", extra="ignore", frozen=True
    )

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    events_topic: str = "callboard.events"
    # Partitions of the events topic when a service creates it: the most aggregator
    # processes that can share the work.
    events_partitions: int = Field(default=6, ge=1)
    # How often the Kafka clients ask the broker for the topic's partitions: partitions
    # added to scale out get events from ingest, and an aggregator member, within this long.
    kafka_metadata_refresh_seconds: float = Field(default=30.0, gt=0)
    # How the Kafka clients reach a secured cluster (shared/kafka.py builds every client).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # The CA that signed the brokers' certificates; none: the system's trust store.
    kafka_ssl_cafile: Path | None = None
    # The aggregator's consumer group: the aggregator joins it, the API reports its lag.
    group_id: str = "callboard-aggregator"
    database_url: str = DEFAULT_DATABASE_URL
    timezone: str = "Asia/Shanghai"
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    # Other currencies accepted and converted at a fixed rate, e.g. {"USD": "7.10"}.
    currency_rates: dict[str, Decimal] = Field(default_factory=dict)
    effective_call_seconds: int = Field(default=60, ge=0)
    future_tolerance_seconds: int = Field(default=300, ge=0)
    # 0 = Monday ... 6 = Sunday.
    week_start: int = Field(default=0, ge=0, le=6)
    log_level: str = "INFO"

    # Access control (shared/auth.py). "auto": ingest and read routes are open until the
    # first key with their scope exists; "required": every route needs a key; "off": none
    # but the admin routes do. The bootstrap admin key works without being stored.
    auth_mode: Literal["auto", "required", "off"] = "auto"
    admin_key: SecretStr | None = Field(default=None, min_length=32)
    # How long a process trusts what it read of the key table: a revoked key is refused
    # within this many seconds, and requests do not go to the database in between.
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    # Requests per second and burst per API key (per client address while a route is open);
    # 0 turns rate limiting off. In-process: each worker process has its own buckets.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # Refused credentials (401 and 403) per client address: past a burst of this many, the
    # address gets 429 for every request needing a key, right or wrong, until its bucket
    # refills at auth_failures_per_minute, so keys cannot be guessed at speed. 0 turns it off.
    auth_failures_per_minute: float = Field(default=30.0, ge=0)
    auth_failure_burst: int = Field(default=30, ge=1)

    # Teams whose days, weeks and hours follow another zone, e.g. {"team-hk": "Asia/Hong_Kong"}:
    # a request scoped to one such team counts its periods and buckets in that zone.
    team_timezones: dict[str, str] = Field(default_factory=dict)

    # Disposition codes added to or overriding the default table, per campaign (TOML; the
    # format is in shared/dispositions.py). Read once at start: a bad file stops the service.
    dispositions_file: Path | None = None

    @model_validator(mode="after")
    def _complete_kafka_security(self) -> CommonSettings:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, value in (
                    ("CALLBOARD_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                    ("CALLBOARD_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("CALLBOARD_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"CALLBOARD_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} "
                    f"needs {', '.join(missing)}"
                )
        if self.kafka_ssl_cafile is not None and not self.kafka_ssl_cafile.is_file():
            raise ValueError(f"CALLBOARD_KAFKA_SSL_CAFILE: no file {self.kafka_ssl_cafile}")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("team_timezones")
    @classmethod
    def _known_team_timezones(cls, value: dict[str, str]) -> dict[str, str]:
        for team, name in value.items():
            cls._known_timezone(name)
            if not team:
                raise ValueError("a team time zone needs a team id")
        return value

    @field_validator("dispositions_file")
    @classmethod
    def _usable_dispositions_file(cls, value: Path | None) -> Path | None:
        load_dispositions(value)  # raises a ValueError naming the line and code
        return value

    def timezone_for(self, team_ids: Sequence[str]) -> str:
        """The zone of a request scoped to ``team_ids``: the team's own, if it has one."""
        if len(team_ids) == 1 and team_ids[0] in self.team_timezones:
            return self.team_timezones[team_ids[0]]
        return self.timezone

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]


@lru_cache
def common_settings() -> CommonSettings:
    return CommonSettings()
