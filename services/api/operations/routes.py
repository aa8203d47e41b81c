"""HTTP routes for operations: readiness and the aggregator group's lag."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from services.api.deps import Reader, Settings
from services.api.operations import schemas
from services.api.operations.lag import LagMonitor, worst
from shared.errors import ERROR_RESPONSES, ServiceUnavailable

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/ops/lag", response_model=schemas.LagResponse, tags=["operations"])
async def get_lag(request: Request, settings: Settings, _reader: Reader) -> dict[str, Any]:
    """Per partition of the events topic: end and committed offsets, lag, and a status
    judged over a sliding window of observations (rules: ``services/api/operations/lag.py``)."""
    monitor: LagMonitor = request.app.state.lag_monitor
    try:
        partitions = await run_in_threadpool(monitor.observe)
    except DBAPIError as exc:
        raise ServiceUnavailable("the database is not reachable", retry_after=5) from exc
    except Exception as exc:
        raise ServiceUnavailable(f"Kafka is not reachable: {exc}", retry_after=5) from exc
    return {
        "topic": settings.events_topic,
        "group_id": settings.group_id,
        "status": worst(p.status for p in partitions),
        "window_seconds": settings.lag_window_seconds,
        "partitions": [
            {
                "partition": p.partition,
                "end_offset": p.end_offset,
                "committed_offset": p.committed_offset,
                "kafka_committed_offset": p.kafka_committed_offset,
                "lag": p.lag,
                "lag_seconds": None if math.isnan(p.lag_seconds) else round(p.lag_seconds, 3),
                "status": p.status,
                "last_commit_at": p.last_commit_at.isoformat() if p.last_commit_at else None,
                "consumer_assigned": p.owned,
            }
            for p in partitions
        ],
    }


@router.get("/readyz", response_model=schemas.ReadyResponse, tags=["health"])
async def readyz(request: Request) -> dict[str, Any]:
    """Ready when the database answers."""
    engine: Engine = request.app.state.engine

    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except DBAPIError as exc:
        raise ServiceUnavailable("the database is not reachable", retry_after=5) from exc
    return {"status": "ready", "database": True}
