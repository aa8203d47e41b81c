"""Live updates for wallboards: Server-Sent Events driven by the aggregator's commits.

One :class:`ChangeFeed` per API process learns of every commit — on PostgreSQL by
``LISTEN`` on the channel the aggregator notifies inside its batch transaction, on SQLite by
one watcher reading the stored offsets four times a second — and wakes the open streams.
A stream recomputes its view only then (views with the same parameters share one
computation per change) and sends an event only when its numbers changed. Open
connections never poll the database themselves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select
from starlette.concurrency import run_in_threadpool

from services.api.anomalies import find_anomalies
from services.api.periods import Granularity, Period, resolve_range
from services.api.queries import Query as MetricsQuery
from services.api.routes import Reader, Settings, filters_for, parse_timestamp
from services.api.service import MetricsService, parse_group_by, parse_metrics
from shared.db import COMMITS_CHANNEL
from shared.errors import ERROR_RESPONSES
from shared.models import consumer_offset

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 5.0


class ChangeFeed:
    """A version number that goes up on every aggregator commit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.version = 0
        self.last_commit: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cache: dict[Any, tuple[int, Any]] = {}
        self._cache_lock = threading.Lock()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        target = self._listen if self.engine.dialect.name == "postgresql" else self._watch
        self._thread = threading.Thread(target=target, name="change-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _bump(self, commit_at: str | None) -> None:
        def bump() -> None:
            self.version += 1
            self.last_commit = commit_at
            assert self._changed is not None
            self._changed.set()
            self._changed = asyncio.Event()

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(bump)

    def _listen(self) -> None:
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {COMMITS_CHANNEL}")
                    while not self._stop.is_set():
                        for notify in connection.notifies(timeout=1.0):
                            payload = orjson.loads(notify.payload) if notify.payload else {}
                            self._bump(payload.get("at"))
            except psycopg.Error as exc:
                log.warning("change feed lost its connection", extra={"reason": str(exc)})
                self._stop.wait(1.0)

    def _watch(self) -> None:
        seen: Any = None
        query = select(
            func.max(consumer_offset.c.updated_at), func.sum(consumer_offset.c.next_offset)
        )
        while not self._stop.wait(0.25):
            try:
                with self.engine.connect() as connection:
                    current = tuple(connection.execute(query).one())
            except Exception as exc:
                log.warning("change feed cannot read offsets", extra={"reason": str(exc)})
                continue
            if current != seen:
                if seen is not None:
                    self._bump(str(current[0]))
                seen = current

    async def wait(self, version: int, timeout: float) -> bool:
        """Wait until the version moves past ``version``; False on timeout."""
        if self.version != version:
            return True
        assert self._changed is not None
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def shared(self, key: Any, version: int, compute: Callable[[], Any]) -> Any:
        """One computation per view and change, however many streams show that view."""
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
        value = compute()
        with self._cache_lock:
            self._cache[key] = (version, value)
            if len(self._cache) > 1000:
                self._cache.pop(next(iter(self._cache)))
        return value


router = APIRouter(responses=ERROR_RESPONSES)
Ids = Annotated[list[str] | None, Query()]


@router.get(
    "/v1/stream",
    tags=["metrics"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream"}},
)
async def stream(
    request: Request,
    reader: Reader,
    settings: Settings,
    metrics: str | None = None,
    group_by: str | None = None,
    period: Period = Period.today,
    leaderboard: Annotated[str | None, Query(description="A KPI to rank agents by")] = "revenue",
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    agent_id: Ids = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    anomalies: Annotated[bool, Query(description="Also send today's anomalies")] = False,
) -> StreamingResponse:
    """Server-Sent Events for a wallboard: ``metrics`` (as ``/v1/metrics``) and
    ``leaderboard`` events (and ``anomalies``, as ``/v1/anomalies``, with anomalies=true),
    sent at once and again after every aggregator commit that changes them. After 5 s
    without a change a comment keeps proxies from closing the connection and the view is
    read once more."""
    keys = parse_metrics(metrics)
    groups = parse_group_by(group_by)
    filters = filters_for(reader, agent_id, team_id, campaign_id)
    start, end = parse_timestamp("from", from_), parse_timestamp("to", to)
    if start is not None or end is not None:
        resolve_range(None, start, end, settings.zone)  # reject a bad range before streaming
    feed: ChangeFeed = request.app.state.change_feed
    engine: Engine = request.app.state.engine
    service = MetricsService(settings)
    view = (keys, groups, period, leaderboard, limit, filters, from_, to, anomalies)

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
            rows = service.metrics(connection, keys, query)
            out["metrics"] = orjson.dumps({**bounds, "rows": rows})
            if leaderboard:
                _, ranked = service.leaderboard(
                    connection, leaderboard, rng, filters, limit=limit, min_volume=None
                )
                out["leaderboard"] = orjson.dumps(
                    {**bounds, "metric": leaderboard, "rows": ranked}, default=str
                )
            if anomalies:
                found = find_anomalies(connection, settings, datetime.now(UTC), filters)
                out["anomalies"] = orjson.dumps(found, default=str)
        return out

    async def events() -> AsyncIterator[bytes]:
        sent: dict[str, bytes] = {}
        quiet = False
        while not await request.is_disconnected():
            version = feed.version
            # Nothing announced for a while: look once anyway, so a missed notice (or a rolling
            # window moving on) cannot leave a wallboard behind for good; once per view and
            # quiet interval, however many streams show it.
            key = (view, int(time.monotonic() // KEEPALIVE_SECONDS)) if quiet else view
            payloads = await run_in_threadpool(feed.shared, key, version, compute)
            stamp = orjson.dumps(
                {"version": version, "commit_at": feed.last_commit, "sent_at": time.time()}
            ).decode()
            for name, data in payloads.items():
                if sent.get(name) != data:
                    yield (
                        f"event: {name}\nid: {version}\n"
                        f'data: {{"as_of": {stamp}, "data": {data.decode()}}}\n\n'
                    ).encode()
            sent = payloads
            quiet = not await feed.wait(version, KEEPALIVE_SECONDS)
            if quiet:
                yield b": keepalive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
