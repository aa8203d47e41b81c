"""The read API's settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.settings import CommonSettings


class ApiSettings(CommonSettings):
    group_id: str = "callboard-aggregator"
    # Ratio KPIs need this much volume (their denominator) to rank, unless a request says.
    leaderboard_min_volume: int = Field(default=20, ge=0)
    # Lag status (services/api/lag.py): observations every lag_sample_seconds (0: only on
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


@lru_cache
def api_settings() -> ApiSettings:
    return ApiSettings()
