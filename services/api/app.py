"""The read API: metrics, leaderboards and pipeline lag for dashboards and wallboards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool

from services.api.admin.routes import router as admin_router
from services.api.board.page import board_assets
from services.api.board.page import router as page_router
from services.api.board.routes import router as board_router
from services.api.channels.routes import router as channels_router
from services.api.channels.scheduler import Scheduler
from services.api.coaching.routes import router as coaching_router
from services.api.contests.routes import router as contests_router
from services.api.deps import pool_exhausted
from services.api.funnel.routes import router as funnel_router
from services.api.inflight import InFlightLimit
from services.api.metrics.routes import router as metrics_router
from services.api.operations.lag import LagMonitor
from services.api.operations.prometheus import count_queries
from services.api.operations.routes import router as operations_router
from services.api.settings import ApiSettings, api_settings
from services.api.stream.feed import ChangeFeed, StreamSlots
from services.api.stream.routes import router as stream_router
from services.api.targets.routes import router as targets_router
from shared.auth import Authenticator
from shared.db import make_engine
from shared.errors import ServiceUnavailable
from shared.http import JsonResponse, install_common
from shared.logs import configure_logging
from shared.runtime import collect_cycles_rarely


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or api_settings()
    configure_logging("api", settings.log_level)
    engine = make_engine(
        settings.database_url,
        pool_size=settings.database_connections,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
    count_queries(engine)
    lag_monitor = LagMonitor(settings, engine)
    change_feed = ChangeFeed(engine)
    scheduler = Scheduler(engine, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sized with the requests in flight (services/api/inflight.py), not anyio's 40.
        to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        lag_monitor.start()
        change_feed.start()
        scheduler.start()
        yield
        await run_in_threadpool(scheduler.close)
        await run_in_threadpool(change_feed.close)
        await run_in_threadpool(lag_monitor.close)
        engine.dispose()

    app = FastAPI(
        title="Callboard read API",
        version="1.0.0",
        summary="Telesales KPIs, leaderboards and pipeline lag.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.lag_monitor = lag_monitor
    app.state.change_feed = change_feed
    app.state.stream_slots = StreamSlots(settings.streams_per_key)
    app.state.authenticator = Authenticator(settings, lambda: engine)
    # Added before install_common's middleware, so that it runs inside it: its refusals
    # carry a request id and are measured like any answer.
    app.add_middleware(
        InFlightLimit,
        total=settings.max_requests_in_flight,
        per_caller=settings.max_requests_in_flight_per_key,
    )
    install_common(app, "api")
    collect_cycles_rarely()

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, _exc: OperationalError) -> Response:
        error = ServiceUnavailable("the database is not reachable", retry_after=5)
        return JsonResponse(error.body(), status_code=error.status_code, headers=error.headers)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(_request: Request, _exc: PoolTimeout) -> Response:
        error = pool_exhausted()
        return JsonResponse(error.body(), status_code=error.status_code, headers=error.headers)

    app.include_router(metrics_router)
    app.include_router(operations_router)
    app.include_router(admin_router)
    app.include_router(coaching_router)
    app.include_router(targets_router)
    app.include_router(funnel_router)
    app.include_router(stream_router)
    app.include_router(board_router)
    app.include_router(channels_router)
    app.include_router(contests_router)
    app.include_router(page_router)
    app.mount("/board/static", board_assets(), name="board-static")
    return app
