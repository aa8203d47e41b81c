"""HTTP route of the live stream: ``GET /v1/stream``, Server-Sent Events for wallboards.

Each open stream waits on the process's change feed (``services.api.stream.feed``), and
recomputes its views only when the aggregator has committed: views with the same parameters
share one computation per change, and an event is sent only when its numbers changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select
from starlette.concurrency import run_in_threadpool

from services.api.board.service import agents_now, pace_hourly, recent_sales, utc_now
from services.api.coaching.anomalies import find_anomalies
from services.api.contests.service import (
    contest_standings,
    get_contest,
    list_contests,
    present_standings,
)
from services.api.deps import From, Ids, Settings, filters_for, parse_timestamp
from services.api.metrics.periods import Granularity, Period, resolve_range
from services.api.metrics.queries import Filters, agent_teams
from services.api.metrics.queries import Query as MetricsQuery
from services.api.metrics.service import (
    MetricsService,
    check_rankable,
    parse_group_by,
    parse_metrics,
)
from services.api.operations.lag import LagMonitor
from services.api.stream.feed import ChangeFeed, EventStream, StreamSlots
from shared.auth import Authenticator, Principal, Scope, require
from shared.errors import ERROR_RESPONSES, InvalidInput, NotFound
from shared.models import consumer_offset
from shared.timeutil import as_utc

KEEPALIVE_SECONDS = 5.0


router = APIRouter(responses=ERROR_RESPONSES)
# Streams are long-lived: bounded per key by open streams, not by the request rate.
StreamReader = Annotated[Principal, Depends(require(Scope.read, rate_limited=False))]

VIEWS = ("metrics", "leaderboard", "anomalies", "agents", "sale", "pace", "status", "contests")
# How often the key of an open stream is checked against the key table (itself read at
# most CALLBOARD_AUTH_CACHE_SECONDS ago), and how often status and agents are sent at least.
KEY_CHECK_SECONDS = 1.0


def parse_views(raw: str | None, leaderboard: str | None, anomalies: bool) -> tuple[str, ...]:
    """The events a stream sends: ``views`` as given, or (without it) metrics, the
    leaderboard when one is asked, and anomalies when asked."""
    if raw is None:
        return tuple(
            v
            for v, wanted in (
                ("metrics", True),
                ("leaderboard", bool(leaderboard)),
                ("anomalies", anomalies),
            )
            if wanted
        )
    views = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise InvalidInput(
            f"unknown view {', '.join(unknown) or '(none)'}; views takes {', '.join(VIEWS)}",
            details={"unknown": unknown, "valid": list(VIEWS)},
        )
    if "leaderboard" in views and not leaderboard:
        raise InvalidInput("the leaderboard view needs a leaderboard KPI")
    return views


def _event(name: str, event_id: int, stamp: str, data: bytes) -> bytes:
    head = f'event: {name}\nid: {event_id}\ndata: {{"as_of": {stamp}, "data": '
    return b"".join((head.encode(), data, b"}\n\n"))


@router.get(
    "/v1/stream",
    tags=["metrics"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream"}},
)
async def stream(
    request: Request,
    reader: StreamReader,
    settings: Settings,
    metrics: str | None = None,
    group_by: str | None = None,
    period: Period = Period.today,
    leaderboard: Annotated[str | None, Query(description="A KPI to rank agents by")] = "revenue",
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    leaderboard_by: Annotated[
        str | None,
        Query(
            pattern="^team$",
            description="team: one ranked list per team (each as /v1/leaderboard?team_id=)",
        ),
    ] = None,
    agent_id: Ids = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
    from_: From = None,
    to: str | None = None,
    anomalies: Annotated[bool, Query(description="Also send today's anomalies")] = False,
    views: Annotated[
        str | None,
        Query(description="Comma-separated events to send: " + ", ".join(VIEWS)),
    ] = None,
    since: Annotated[
        str | None,
        Query(description="sale events: only sales counted after this time (RFC 3339)"),
    ] = None,
    contest: Annotated[
        int | None,
        Query(ge=1, le=2**31 - 1, description="contests events of this contest only"),
    ] = None,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """Server-Sent Events for a wallboard: ``metrics`` (as ``/v1/metrics``) and
    ``leaderboard`` events (with ``leaderboard_by=team``, one list per team, each as
    ``/v1/leaderboard?team_id=``; and ``anomalies``, as ``/v1/anomalies``, with anomalies=true),
    sent at once and again after every aggregator commit that changes them; ``agents`` (as
    ``/v1/agents/now``) on change and at least every 5 s; ``sale``, one event per sale
    within a second of the commit that counts it; ``pace`` (as ``/v1/pace/hourly``) on
    change; ``contests`` (``{"contests": [...]}``, each as ``/v1/contests/{id}``: the
    running contests, or with ``contest=<id>`` that one whatever its status) on change;
    ``status`` (``last_commit_at``,
    ``lag_status``, ``sent_at``) at least every 5 s. ``views`` selects the events.

    Sales: a new stream sends those counted from now on; one that resumes (the
    ``Last-Event-ID`` an event stream sends back, or ``since``) those counted after that
    point, within the last two minutes; never one sale twice on a stream.

    After 5 s without a change a comment keeps proxies from closing the
    connection and the view is read once more. Every parameter is checked, and the first
    view computed, before the stream starts: a bad one answers 422, not a broken stream. A
    key revoked while its stream is open ends the stream with an ``error`` event
    (``unauthorized``) within the key cache time."""
    keys = parse_metrics(metrics)
    groups = parse_group_by(group_by)
    leaderboard = leaderboard.strip() if leaderboard else None
    selected = parse_views(views, leaderboard, anomalies)
    if contest is not None and "contests" not in selected:
        # A board showing one contest: that is all it asked for unless it named views.
        selected = ("contests",) if views is None else (*selected, "contests")
    if leaderboard and "leaderboard" in selected:
        check_rankable(leaderboard)
    filters = filters_for(reader, agent_id, team_id, campaign_id)
    resume = _resume_cursor(last_event_id, parse_timestamp("since", since))
    start, end = parse_timestamp("from", from_), parse_timestamp("to", to)
    if start is not None or end is not None:
        resolve_range(None, start, end, settings.zone)  # reject a bad range before streaming
    feed: ChangeFeed = request.app.state.change_feed
    slots: StreamSlots = request.app.state.stream_slots
    authenticator: Authenticator = request.app.state.authenticator
    lag_monitor: LagMonitor = request.app.state.lag_monitor
    engine: Engine = request.app.state.engine
    service = MetricsService(settings)
    view = (keys, groups, period, leaderboard, limit, leaderboard_by, filters, from_, to, selected)

    def team_leaderboards(connection: Any, metric: str, bounds: dict[str, str]) -> bytes:
        """One ranked list per team of the stream (its ``team_id``s, else every team the
        key may read), each counted as ``/v1/leaderboard?team_id=`` counts it: in the
        team's own zone when it has one."""
        teams = filters.team_ids or tuple(
            sorted(set(agent_teams(connection, filters.key_teams).values()))
        )
        lists = []
        for team in teams:
            one: Filters = replace(filters, team_ids=(team,))
            zone = ZoneInfo(settings.timezone_for(one.team_ids))
            rng = resolve_range(
                None if start is not None else period,
                start,
                end,
                zone,
                first_weekday=settings.week_start,
            )
            _, ranked = service.leaderboard(
                connection, metric, rng, one, limit=limit, min_volume=None
            )
            lists.append(
                {
                    "team_id": team,
                    "from": rng.start.astimezone(zone).isoformat(),
                    "to": rng.end.astimezone(zone).isoformat(),
                    "rows": ranked,
                }
            )
        return orjson.dumps({**bounds, "metric": metric, "by": "team", "teams": lists}, default=str)

    def compute() -> dict[str, bytes]:
        rng = resolve_range(
            None if start is not None else period,
            start,
            end,
            settings.zone,
            first_weekday=settings.week_start,
        )
        query = MetricsQuery(
            groups, Granularity.none, rng, filters, settings.zone, settings.week_start
        )
        bounds = {
            "from": rng.start.astimezone(settings.zone).isoformat(),
            "to": rng.end.astimezone(settings.zone).isoformat(),
        }
        out: dict[str, bytes] = {}
        with engine.connect() as connection:
            if "metrics" in selected:
                rows = service.metrics(connection, keys, query)
                out["metrics"] = orjson.dumps({**bounds, "rows": rows})
            if "leaderboard" in selected and leaderboard and leaderboard_by == "team":
                out["leaderboard"] = team_leaderboards(connection, leaderboard, bounds)
            elif "leaderboard" in selected and leaderboard:
                _, ranked = service.leaderboard(
                    connection, leaderboard, rng, filters, limit=limit, min_volume=None
                )
                out["leaderboard"] = orjson.dumps(
                    {**bounds, "metric": leaderboard, "rows": ranked}, default=str
                )
            if "anomalies" in selected:
                found = find_anomalies(connection, settings, datetime.now(UTC), filters)
                out["anomalies"] = orjson.dumps(found, default=str)
        return out

    def compute_status() -> bytes:
        with engine.connect() as connection:
            last = connection.execute(
                select(func.max(consumer_offset.c.updated_at)).where(
                    consumer_offset.c.topic == settings.events_topic
                )
            ).scalar()
        return orjson.dumps(
            {
                "last_commit_at": as_utc(last).isoformat() if last is not None else None,
                "lag_status": lag_monitor.current_status(),
            }
        )

    def compute_agents() -> bytes:
        with engine.connect() as connection:
            return orjson.dumps(agents_now(connection, settings, filters, utc_now()))

    def compute_pace() -> bytes:
        with engine.connect() as connection:
            return orjson.dumps(pace_hourly(connection, settings, filters, utc_now()))

    def compute_contests() -> bytes:
        key_teams = filters.key_teams
        now = datetime.now(UTC)
        with engine.connect() as connection:
            if contest is not None:
                ids = [contest]
            else:
                running = list_contests(connection, key_teams=key_teams, status="running", now=now)
                ids = [c.contest_id for c in running]
            found = []
            for contest_id in ids:
                try:
                    found.append(
                        contest_standings(
                            connection, settings, contest_id, key_teams=key_teams, now=now
                        )
                    )
                except NotFound:
                    continue  # deleted since: no longer shown
            return orjson.dumps(
                {"contests": [present_standings(s, settings, key_teams) for s in found]},
                default=str,
            )

    def compute_sales() -> list[dict[str, Any]]:
        with engine.connect() as connection:
            return recent_sales(connection, filters, utc_now())

    async def sales_now(version: int) -> list[dict[str, Any]]:
        if "sale" not in selected:
            return []
        sales: list[dict[str, Any]] = await feed.view(("sale", filters), version, compute_sales)
        return sales

    async def views_now(version: int, quiet: bool) -> dict[str, Any]:
        wanted: dict[str, Awaitable[Any]] = {}
        if {"metrics", "leaderboard", "anomalies"} & set(selected):
            # Nothing announced for a while: look once anyway, so a missed notice (or a
            # rolling window moving on) cannot leave a wallboard behind for good; once per
            # view and quiet interval, however many streams show it.
            key: Any = (view, int(time.monotonic() // KEEPALIVE_SECONDS)) if quiet else view
            wanted["classic"] = feed.view(key, version, compute)
        if "status" in selected:
            # Shared per second: sent whenever a stream wakes, so at least every 5 s.
            wanted["status"] = feed.view(("status", int(time.time())), version, compute_status)
        if "agents" in selected:
            # Per filters and second: its timers move, so it is sent at every wake.
            wanted["agents"] = feed.view(
                ("agents", filters, int(time.time())), version, compute_agents
            )
        if "pace" in selected:
            wanted["pace"] = feed.view(("pace", filters), version, compute_pace)
        if "contests" in selected:
            # Shared per key's teams, contest and second: a contest starts and ends with
            # no commit, so an answer computed before its end must not outlive that second
            # (the version alone would keep it "running" until the next event arrives).
            wanted["contests"] = feed.view(
                ("contests", filters.key_teams, contest, int(time.time())),
                version,
                compute_contests,
            )
        # The views are computed side by side: a board waits for the slowest, not the sum.
        out = dict(zip(wanted, await asyncio.gather(*wanted.values()), strict=True))
        out.update(out.pop("classic", {}))
        if "status" in out:
            out["status"] = out["status"][:-1] + f',"sent_at":"{_now_text()}"}}'.encode()
        return out

    if contest is not None:
        # An unknown contest, or another team's, is a 404 before the stream starts.
        def check_contest() -> None:
            with engine.connect() as connection:
                get_contest(connection, contest, key_teams=filters.key_teams)

        await run_in_threadpool(check_contest)

    # The first computation answers errors (a KPI that cannot be computed, the database
    # down) with their status before the stream starts.
    first_version = feed.version
    first_sales = await sales_now(first_version)
    first = await views_now(first_version, quiet=False)
    slots.acquire(reader.client)

    # Sales counted up to the first look are not news to a new stream.
    cursor = resume if resume is not None else max((s["cursor"] for s in first_sales), default=0)

    async def events() -> AsyncIterator[bytes]:
        sent: dict[str, bytes] = {}
        payloads: dict[str, Any] | None = first
        sales = first_sales
        sales_sent: set[int] = set()
        newest = cursor
        quiet = False
        version = first_version
        while True:
            stamp = orjson.dumps(
                {"version": version, "commit_at": feed.last_commit, "sent_at": time.time()}
            ).decode()
            news = []
            for sale in sales:
                if sale["cursor"] > cursor and sale["seq"] not in sales_sent:
                    sales_sent.add(sale["seq"])
                    newest = max(newest, sale["cursor"])
                    news.append(_event("sale", newest, stamp, orjson.dumps(sale["sale"])))
            # Remember only what the window still shows.
            sales_sent &= {sale["seq"] for sale in sales}
            if news:
                yield b"".join(news)
                # Every stream woken by this commit sends its sales before any sends the
                # larger views.
                await asyncio.sleep(0)
            if payloads is None:
                payloads = await views_now(version, quiet)
            event_id = newest if "sale" in selected else version
            changed = [
                _event(name, event_id, stamp, data)
                for name, data in payloads.items()
                if sent.get(name) != data
            ]
            if changed:
                yield b"".join(changed)
            sent, payloads = payloads, None
            outcome = await _wait(request, feed, authenticator, reader, version)
            if outcome == "gone":
                return
            if outcome == "revoked":
                message = "the API key was revoked or removed; ask for a new key"
                data = orjson.dumps({"code": "unauthorized", "message": message})
                yield _event("error", newest if "sale" in selected else version, stamp, data)
                return
            quiet = outcome == "quiet"
            if quiet:
                yield b": keepalive\n\n"
            # Sales first: they are what a board must show within a second.
            version = feed.version
            sales = await sales_now(version)

    return EventStream(events(), lambda: slots.release(reader.client))


async def _wait(
    request: Request,
    feed: ChangeFeed,
    authenticator: Authenticator,
    reader: Principal,
    version: int,
) -> str:
    """Until a commit (``changed``), KEEPALIVE_SECONDS without one (``quiet``), the client
    leaving (``gone``) or the key no longer valid (``revoked``)."""
    deadline = time.monotonic() + KEEPALIVE_SECONDS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "quiet"
        changed = await feed.wait(version, min(left, KEY_CHECK_SECONDS))
        if await request.is_disconnected():
            return "gone"
        if not await authenticator.still_valid(reader):
            return "revoked"
        if changed:
            return "changed"


def _resume_cursor(last_event_id: str | None, since: datetime | None) -> int | None:
    """Where a resumed stream's sales start: the id of the last event it received (with the
    ``sale`` view, the counting time of its newest sale, in microseconds), or ``since``."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise InvalidInput(
                f"Last-Event-ID {text[:40]!r} is not an id this stream sent",
                details=[{"field": "Last-Event-ID", "message": "a whole number"}],
            )
        return int(text)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput("since needs a UTC offset, e.g. 2026-12-04T09:30:00+08:00")
        return int(since.timestamp() * 1_000_000)
    return None


def _now_text() -> str:
    return datetime.now(UTC).isoformat()
