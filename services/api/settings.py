"""The read API's settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.settings import CommonSettings


class ApiSettings(CommonSettings):
    group_id: str = "callboard-aggregator"
    # Ratio KPIs need this much volume (their denominator) to rank, unless a request says.
    leaderboard_min_volume: int = Field(default=20, ge=0)
    # Lag status: warning past this many seconds behind, error past the second figure.
    lag_warning_seconds: float = Field(default=5.0, gt=0)
    lag_error_seconds: float = Field(default=60.0, gt=0)
    # A partition with lag whose offsets have not moved for this long is stalled.
    lag_stall_seconds: float = Field(default=60.0, gt=0)


@lru_cache
def api_settings() -> ApiSettings:
    return ApiSettings()
