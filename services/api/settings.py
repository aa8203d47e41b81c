"""The read API's settings."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from shared.settings import CommonSettings

# Beyond the requests in flight: connections and threads for the lag sampler, the key
# cache's refresh, /readyz and the live streams' shared computations.
API_EXTRA_CONNECTIONS = 4
API_EXTRA_THREADS = 8
BoardState = Literal["available", "on_call", "wrap_up", "paused"]
VICIDIAL_STEPS: dict[BoardState, list[int]] = {
    "available": [60, 300],
    "on_call": [10, 60, 300],
    "wrap_up": [10, 60, 300, 600, 900],
    "paused": [10, 60, 300, 600, 900],
}


class ApiSettings(CommonSettings):
    # Ratio KPIs need this much volume (their denominator) to rank, unless a request says.
    leaderboard_min_volume: int = Field(default=20, ge=0)
    # Lag status (services/api/operations/lag.py): observations every lag_sample_seconds (0: only on
    # request), judged over the last lag_window_seconds; a partition with lag whose
    # committed offset has not moved for lag_stall_seconds is stalled or in error.
    lag_sample_seconds: float = Field(default=5.0, ge=0)
    lag_window_seconds: float = Field(default=60.0, gt=0)
    lag_stall_seconds: float = Field(default=60.0, gt=0)
    # Open /v1/stream connections per key (per client address on an open route). Streams
    # are not counted by the per-request rate limit: the boards of a floor share one key
    # and reconnect together after a restart.
    streams_per_key: int = Field(default=2000, ge=1)
    # An agent not logged out with no event for this long is shown as quiet.
    agent_quiet_seconds: int = Field(default=300, ge=1)
    # An answer of /v1/metrics or /v1/dispositions holds at most this many rows (buckets ×
    # groups); a request for more is refused with 422 before anything heavy is read.
    max_answer_rows: int = Field(default=50_000, ge=1)
    # Requests one API process serves at once (live streams aside); past it, 503 at once.
    # Its worker threads are this plus API_EXTRA_THREADS, so that a request holding a
    # database connection always finds a thread to finish on.
    max_requests_in_flight: int = Field(default=32, ge=1, le=10_000)
    # Requests one key (or client address on an open route) may have in flight at once;
    # past it, 429 at once. Live streams do not count.
    max_requests_in_flight_per_key: int = Field(default=8, ge=1)
    # Database connections of one API process; default: max_requests_in_flight plus
    # API_EXTRA_CONNECTIONS for the lag sampler, the key cache and live streams.
    db_pool_size: int | None = Field(default=None, ge=1, le=10_000)
    # How long a request waits for a free database connection before 503 with Retry-After.
    db_pool_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    # Chat channels (services/api/channels): how often the scheduler looks for due slots (0:
    # this process sends none), how late a missed slot is still sent, after how long a claim
    # still pending is taken over (its process died), and each delivery's tries, first
    # backoff (doubling) and HTTP timeout.
    channel_tick_seconds: float = Field(default=15.0, ge=0)
    channel_catch_up_seconds: int = Field(default=1800, ge=0)
    channel_claim_lease_seconds: int = Field(default=900, ge=1)
    channel_attempts: int = Field(default=5, ge=1, le=20)
    channel_backoff_seconds: float = Field(default=2.0, ge=0)
    channel_timeout_seconds: float = Field(default=10.0, gt=0)
    # At most one contest lead-change message per contest and channel in this time.
    contest_lead_interval_seconds: float = Field(default=600.0, ge=0)

    @property
    def database_connections(self) -> int:
        return self.db_pool_size or self.max_requests_in_flight + API_EXTRA_CONNECTIONS

    @property
    def worker_threads(self) -> int:
        return self.max_requests_in_flight + API_EXTRA_THREADS

    # The wallboard (/board): the drop rate shown red above this, and per agent state the
    # seconds in state at which a tile's colour steps up (VICIdial's real-time report
    # defaults: waiting 60/300, in call 10/60/300, paused and wrap-up 10/60/300/600/900).
    drop_rate_max: Decimal = Field(default=Decimal("0.03"), ge=0, le=1)
    board_state_seconds: dict[BoardState, list[int]] = Field(
        default_factory=lambda: dict(VICIDIAL_STEPS)
    )

    @field_validator("board_state_seconds")
    @classmethod
    def _steps_ascend(cls, value: dict[BoardState, list[int]]) -> dict[BoardState, list[int]]:
        # States not given keep VICIdial's steps.
        value = {**VICIDIAL_STEPS, **value}
        for state, steps in value.items():
            if len(steps) > 5 or any(s <= 0 for s in steps) or steps != sorted(set(steps)):
                raise ValueError(f"{state}: at most 5 ascending positive seconds, e.g. [60, 300]")
        return value


@lru_cache
def api_settings() -> ApiSettings:
    return ApiSettings()
