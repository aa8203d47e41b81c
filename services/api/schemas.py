"""Response bodies of the read API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class MetricsResponse(BaseModel):
    from_: str = Field(alias="from")
    to: str
    timezone: str
    granularity: str
    metrics: list[str]
    rows: list[dict[str, Any]]


class LeaderboardRow(BaseModel):
    rank: int
    agent_id: str
    team_id: str | None
    value: Any
    volume: Any
    previous_rank: int | None
    rank_change: int | None


class LeaderboardResponse(BaseModel):
    metric: str
    from_: str = Field(alias="from")
    to: str
    timezone: str
    min_volume: int
    rows: list[LeaderboardRow]


LagStatus = Literal["ok", "warning", "stalled", "error"]


class PartitionLagOut(BaseModel):
    partition: int
    end_offset: int
    committed_offset: int
    # The offset Kafka holds for the group: committed there after the database commit.
    kafka_committed_offset: int | None
    lag: int
    lag_seconds: float | None
    status: LagStatus
    last_commit_at: str | None
    consumer_assigned: bool


class LagResponse(BaseModel):
    topic: str
    group_id: str
    status: LagStatus
    window_seconds: float
    partitions: list[PartitionLagOut]


class ReadyResponse(BaseModel):
    status: str
    database: bool
