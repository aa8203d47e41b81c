"""What drives the live stream: the aggregator's commits, and the streams open per caller.

One :class:`ChangeFeed` per API process learns of every commit — on PostgreSQL by
``LISTEN`` on the channel the aggregator notifies inside its batch transaction, on SQLite by
one watcher reading the stored offsets four times a second — and wakes the open streams.
Open connections never poll the database themselves; how many a caller may hold is
bounded here too (``CALLBOARD_STREAMS_PER_KEY``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import psycopg
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select
from starlette.concurrency import run_in_threadpool

from services.api.operations import prometheus
from shared.db import COMMITS_CHANNEL
from shared.errors import RateLimited
from shared.models import consumer_offset

log = logging.getLogger(__name__)


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
        # Touched only on the event loop: no lock needed.
        self._cache: dict[Any, tuple[int, Any]] = {}
        self._pending: dict[tuple[Any, int], asyncio.Task[Any]] = {}

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
            prometheus.STREAM_COMMITS.inc()
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

    async def view(self, key: Any, version: int, compute: Callable[[], Any]) -> Any:
        """One computation per view and change, however many streams show that view: the
        first stream to ask computes it in a worker thread, the others await the same
        result, and later ones take it from the cache without leaving the event loop."""
        cached = self._cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        pending = self._pending.get((key, version))
        if pending is None:
            pending = asyncio.get_running_loop().create_task(self._compute(key, version, compute))
            # Read the outcome even when every stream waiting for it has gone.
            pending.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._pending[(key, version)] = pending
        return await asyncio.shield(pending)

    async def _compute(self, key: Any, version: int, compute: Callable[[], Any]) -> Any:
        try:
            value = await run_in_threadpool(compute)
            prometheus.STREAM_COMPUTATIONS.inc()
            self._cache[key] = (version, value)
            if len(self._cache) > 1000:
                self._cache.pop(next(iter(self._cache)))
            return value
        finally:
            self._pending.pop((key, version), None)


class StreamSlots:
    """Open streams per caller, bounded (``CALLBOARD_STREAMS_PER_KEY``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str) -> None:
        with self._lock:
            count = self._open.get(client, 0)
            if count >= self.limit:
                raise RateLimited(
                    f"this API key has {count} streams open, the most it may "
                    "(CALLBOARD_STREAMS_PER_KEY); close one or retry later",
                    retry_after=5,
                )
            self._open[client] = count + 1
        prometheus.OPEN_STREAMS.inc()

    def release(self, client: str) -> None:
        with self._lock:
            count = self._open.get(client, 0) - 1
            if count > 0:
                self._open[client] = count
            else:
                self._open.pop(client, None)
        prometheus.OPEN_STREAMS.dec()

    def total(self) -> int:
        with self._lock:
            return sum(self._open.values())


class EventStream(StreamingResponse):
    """A streaming response that gives its stream slot back however the stream ends,
    even when the client leaves before the first byte."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
