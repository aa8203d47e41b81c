"""Answers of the operations routes: readiness and lag."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

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
