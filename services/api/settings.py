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
    # An answer of /v1/metrics or /v1/dispositions holds at most this many rows (buckets ×
    # groups); a request for more is refused with 422 before anything heavy is read.
    max_answer_rows: int = Field(default=50_000, ge=1)


@lru_cache
def api_settings() -> ApiSettings:
    return ApiSettings()
