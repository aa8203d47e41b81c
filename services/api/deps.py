"""The request dependencies of the read API's routes: settings, the database connection of a
request (read, or read-write committed when the route returns), the caller's key, and the
query parameters every domain reads the same way (ids, timestamps, periods, file formats)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.api.export.files import Format
from services.api.export.labels import request_lang
from services.api.metrics.periods import (
    FIRST_YEAR,
    LAST_YEAR,
    Granularity,
    Period,
    TimeRange,
    resolve_range,
)
from services.api.metrics.queries import Filters
from services.api.metrics.queries import Query as MetricsQuery
from services.api.settings import ApiSettings
from shared.auth import Principal, Scope, require
from shared.db import transaction
from shared.errors import InvalidInput, ServiceUnavailable
from shared.events import PRINTABLE
from shared.kpis import Lang


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
Ids = Annotated[list[str] | None, Query()]
# ``from`` is a Python keyword: routes name the parameter ``from_``.
From = Annotated[str | None, Query(alias="from")]
AsOf = Annotated[
    str | None, Query(description="RFC 3339 with offset; the moment to judge at (default now)")
]


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


def judged_at(raw: str | None) -> datetime:
    """The moment a question is judged at: ``as_of`` with its offset, or now."""
    moment = parse_timestamp("as_of", raw)
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        raise InvalidInput("as_of must carry a UTC offset, e.g. 2026-11-16T00:00:00+08:00")
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise InvalidInput(f"as_of must be in the years {FIRST_YEAR}–{LAST_YEAR}")
    return moment.astimezone(UTC)


_ID_SHAPE = re.compile(PRINTABLE)


def ids(values: list[str] | None) -> tuple[str, ...]:
    found = tuple(v.strip() for raw in values or [] for v in raw.split(",") if v.strip())
    # Ids are at most 128 printable characters (events.md); anything else matches nothing,
    # and a NUL would not even reach the database.
    bad = [i for i in found if len(i) > 128 or not _ID_SHAPE.match(i)]
    if bad:
        raise InvalidInput(
            "ids are at most 128 characters, without control characters",
            details=[{"field": "id", "message": f"{i[:40]!r} is not an id"} for i in bad[:10]],
        )
    return found


def one_id(name: str, value: str | None) -> str | None:
    """A parameter naming a single id: ``None`` when not given; refused when empty or a list."""
    if value is None:
        return None
    found = ids([value])
    if len(found) != 1 or "," in value:
        raise InvalidInput(
            f"{name} must be one id", details=[{"field": name, "message": "one id, not empty"}]
        )
    return found[0]


def filters_for(
    reader: Principal,
    agent_id: list[str] | None,
    team_id: list[str] | None,
    campaign_id: list[str] | None,
) -> Filters:
    # A key limited to some teams reads only their records, and is refused any other team.
    return Filters(
        ids(agent_id),
        reader.readable_teams(ids(team_id)),
        ids(campaign_id),
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

    def metrics_query(
        self,
        group_by: tuple[str, ...],
        granularity: Granularity,
        filters: Filters,
        first_weekday: int,
    ) -> MetricsQuery:
        """The metrics read of this range, bucketed in this zone."""
        return MetricsQuery(
            group_by,
            granularity,
            self.range,
            filters,
            self.zone,
            first_weekday,
            native=self.native,
        )


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
