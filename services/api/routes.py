"""HTTP routes of the read API."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool

from services.api import schemas
from services.api.export.files import FILE_RESPONSES, Format, respond
from services.api.export.labels import request_lang
from services.api.export.reports import leaderboard_report, metrics_report
from services.api.lag import LagMonitor, worst
from services.api.numbers import MinVolume
from services.api.periods import Granularity, Period, TimeRange, resolve_range
from services.api.queries import Filters
from services.api.queries import Query as MetricsQuery
from services.api.service import MetricsService, parse_group_by, parse_metrics
from services.api.settings import ApiSettings
from shared.auth import CreatedKey, KeyInfo, NewKey, Principal, Scope, require
from shared.auth import create_key as create_api_key
from shared.auth import list_keys as list_api_keys
from shared.auth import revoke_key as revoke_api_key
from shared.db import transaction
from shared.errors import ERROR_RESPONSES, ErrorBody, InvalidInput, ServiceUnavailable
from shared.events import PRINTABLE
from shared.kpis import Lang

router = APIRouter(responses=ERROR_RESPONSES)


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def pool_exhausted() -> ServiceUnavailable:
    """Every database connection is in use: answered at once, never after a long wait."""
    return ServiceUnavailable(
        "every database connection of the API is in use; retry after the Retry-After seconds",
        retry_after=1,
    )


def get_connection(request: Request) -> Iterator[Connection]:
    """One read transaction per request; a database that cannot be reached answers 503, and
    so does one whose connections are all in use."""
    engine: Engine = request.app.state.engine
    try:
        with engine.connect() as connection:
            yield connection
    except OperationalError as exc:
        raise ServiceUnavailable("the database is not reachable", retry_after=5) from exc
    except PoolTimeout as exc:
        raise pool_exhausted() from exc


Settings = Annotated[ApiSettings, Depends(get_settings)]
Db = Annotated[Connection, Depends(get_connection)]
Reader = Annotated[Principal, Depends(require(Scope.read))]
Admin = Annotated[Principal, Depends(require(Scope.admin))]


# Timestamps a query may name: far enough from datetime's limits that a range, its buckets
# and the previous period of equal length can all be computed.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def parse_timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    # A '+' in an unencoded query string arrives as a space.
    fixed = re.sub(r" (\d{2}:?\d{2})$", r"+\1", value.strip())
    try:
        parsed = datetime.fromisoformat(fixed.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{name}={value!r} is not an RFC 3339 timestamp, e.g. 2024-05-01T00:00:00+08:00"
        ) from exc
    if parsed.tzinfo is not None:
        try:
            inside = EARLIEST <= parsed.astimezone(UTC) < LATEST
        except OverflowError:
            inside = False
        if not inside:
            raise InvalidInput(
                f"{name}={value!r} is out of range: timestamps from "
                f"{EARLIEST.year} to {LATEST.year - 1} are accepted"
            )
    return parsed


_ID_SHAPE = re.compile(PRINTABLE)


def _ids(values: list[str] | None) -> tuple[str, ...]:
    ids = tuple(v.strip() for raw in values or [] for v in raw.split(",") if v.strip())
    # Ids are at most 128 printable characters (events.md); anything else matches nothing,
    # and a NUL would not even reach the database.
    bad = [i for i in ids if len(i) > 128 or not _ID_SHAPE.match(i)]
    if bad:
        raise InvalidInput(
            "ids are at most 128 characters, without control characters",
            details=[{"field": "id", "message": f"{i[:40]!r} is not an id"} for i in bad[:10]],
        )
    return ids


def filters_for(
    reader: Principal,
    agent_id: list[str] | None,
    team_id: list[str] | None,
    campaign_id: list[str] | None,
) -> Filters:
    # A key limited to some teams reads only their records, and is refused any other team.
    return Filters(
        _ids(agent_id),
        reader.readable_teams(_ids(team_id)),
        _ids(campaign_id),
        key_teams=reader.team_ids,
    )


@dataclass(frozen=True, slots=True)
class RequestTime:
    """The zone and ``[from, to)`` a read request is answered in."""

    zone_name: str
    zone: ZoneInfo
    range: TimeRange
    native: bool

    def bounds(self) -> dict[str, str]:
        return {
            "from": self.range.start.astimezone(self.zone).isoformat(),
            "to": self.range.end.astimezone(self.zone).isoformat(),
            "timezone": self.zone_name,
        }


def request_time(
    settings: ApiSettings,
    filters: Filters,
    period: Period | None,
    from_: str | None,
    to: str | None,
) -> RequestTime:
    """Periods count in the deployment's zone, or in a team's own zone
    (``CALLBOARD_TEAM_TIMEZONES``) when the request names that one team."""
    zone_name = settings.timezone_for(filters.team_ids)
    zone = ZoneInfo(zone_name)
    rng = resolve_range(
        period,
        parse_timestamp("from", from_),
        parse_timestamp("to", to),
        zone,
        first_weekday=settings.week_start,
    )
    return RequestTime(zone_name, zone, rng, zone_name == settings.timezone)


ReportLang = Annotated[Lang, Depends(request_lang)]
FileFormat = Annotated[
    Format, Query(description="json, or a file: csv (keys as headers) or xlsx (a workbook)")
]


@router.get(
    "/v1/metrics",
    response_model=schemas.MetricsResponse,
    tags=["metrics"],
    responses=FILE_RESPONSES,
)
def get_metrics(
    reader: Reader,
    settings: Settings,
    connection: Db,
    metrics: Annotated[str | None, Query(description="Comma-separated KPI keys")] = None,
    group_by: Annotated[str | None, Query(description="agent, team, campaign")] = None,
    granularity: Granularity = Granularity.none,
    period: Period | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    agent_id: Annotated[list[str] | None, Query()] = None,
    team_id: Annotated[list[str] | None, Query()] = None,
    campaign_id: Annotated[list[str] | None, Query()] = None,
    format: FileFormat = "json",
    lang: ReportLang = "en",
) -> Any:
    """KPIs for any scope and period; the formulas are those of kpis.md.

    Periods and buckets are in the deployment's time zone, or in a team's own zone
    (``CALLBOARD_TEAM_TIMEZONES``) when the request names that one team.
    """
    keys = parse_metrics(metrics)
    filters = filters_for(reader, agent_id, team_id, campaign_id)
    when = request_time(settings, filters, period, from_, to)
    query = MetricsQuery(
        parse_group_by(group_by),
        granularity,
        when.range,
        filters,
        when.zone,
        settings.week_start,
        native=when.native,
    )
    rows = MetricsService(settings).metrics(connection, keys, query)
    answer = {
        **when.bounds(),
        "granularity": granularity.value,
        "metrics": list(keys),
        "rows": rows,
    }
    if format == "json":
        return answer
    asked = {"group_by": group_by, "agent_id": agent_id, "team_id": team_id}
    asked["campaign_id"] = campaign_id
    return respond(metrics_report(answer, query.group_by, lang, asked), format)


@router.get(
    "/v1/leaderboard",
    response_model=schemas.LeaderboardResponse,
    tags=["metrics"],
    responses=FILE_RESPONSES,
)
def get_leaderboard(
    reader: Reader,
    settings: Settings,
    connection: Db,
    metric: str = "sales",
    period: Period | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    team_id: Annotated[list[str] | None, Query()] = None,
    campaign_id: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    min_volume: MinVolume = None,
    order: Annotated[str, Query(pattern="^(desc|asc)$")] = "desc",
    format: FileFormat = "json",
    lang: ReportLang = "en",
) -> Any:
    """Agents ranked by one KPI; ties share a rank; rank change against the previous period."""
    filters = filters_for(reader, None, team_id, campaign_id)
    when = request_time(settings, filters, period, from_, to)
    effective_min, rows = MetricsService(settings).leaderboard(
        connection,
        metric.strip(),
        when.range,
        filters,
        limit=limit,
        min_volume=min_volume,
        ascending=order == "asc",
    )
    answer = {
        "metric": metric,
        **when.bounds(),
        "min_volume": effective_min,
        "rows": rows,
    }
    if format == "json":
        return answer
    asked = {"team_id": team_id, "campaign_id": campaign_id, "order": order, "limit": limit}
    return respond(leaderboard_report(answer, lang, asked), format)


@router.get("/v1/ops/lag", response_model=schemas.LagResponse, tags=["operations"])
async def get_lag(request: Request, settings: Settings, _reader: Reader) -> dict[str, Any]:
    """Per partition of the events topic: end and committed offsets, lag, and a status
    judged over a sliding window of observations (rules: ``services/api/lag.py``)."""
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


def get_write_connection(request: Request) -> Iterator[Connection]:
    """One read-write transaction per request, committed when the route returns."""
    engine: Engine = request.app.state.engine
    try:
        with transaction(engine) as connection:
            yield connection
    except OperationalError as exc:
        raise ServiceUnavailable("the database is not reachable", retry_after=5) from exc
    except PoolTimeout as exc:
        raise pool_exhausted() from exc


# The write transaction commits when the route function returns, before the answer leaves:
# a caller that reads right after a 201 sees its change, and a failed commit is never a 201.
WriteDb = Annotated[Connection, Depends(get_write_connection, scope="function")]


@router.post("/v1/admin/keys", status_code=201, response_model=CreatedKey, tags=["admin"])
def create_key(new: NewKey, request: Request, connection: WriteDb, _admin: Admin) -> CreatedKey:
    """Create an API key. The answer holds the key itself, the only time it is shown."""
    created = create_api_key(connection, new)
    request.app.state.authenticator.cache.invalidate()
    return created


@router.get("/v1/admin/keys", response_model=list[KeyInfo], tags=["admin"])
def list_keys(connection: Db, _admin: Admin) -> list[KeyInfo]:
    """Every key, revoked ones too; never a secret."""
    return list_api_keys(connection)


@router.delete(
    "/v1/admin/keys/{key_id}",
    response_model=KeyInfo,
    tags=["admin"],
    responses={404: {"model": ErrorBody, "description": "No such key"}},
)
def revoke_key(key_id: str, request: Request, connection: WriteDb, _admin: Admin) -> KeyInfo:
    """Revoke a key. Every process refuses it within CALLBOARD_AUTH_CACHE_SECONDS."""
    revoked = revoke_api_key(connection, key_id)
    request.app.state.authenticator.cache.invalidate()
    return revoked
