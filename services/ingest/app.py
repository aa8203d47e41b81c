"""The ingest service: dialers post call events, Kafka stores them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.ingest.adapters.routes import router as adapter_router
from services.ingest.adapters.service import AdapterService
from services.ingest.producer import EventProducer
from services.ingest.routes import event_schema_components, router
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings, ingest_settings
from shared.auth import Authenticator
from shared.db import engine_for
from shared.http import JsonResponse, install_common
from shared.logs import configure_logging
from shared.runtime import collect_cycles_rarely


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or ingest_settings()
    configure_logging("ingest", settings.log_level)
    producer = EventProducer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(producer.close)
        app.state.ingest.close()

    app = FastAPI(
        title="Callboard ingest",
        version="1.0.0",
        summary="Call events from dialers, stored durably in Kafka.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.state.ingest = IngestService(settings, producer)
    app.state.adapters = AdapterService(settings, app.state.ingest)
    # Ingest reads the key table only (through a cache), and only when auth is on.
    app.state.authenticator = Authenticator(settings, lambda: engine_for(settings.database_url))
    install_common(app, "ingest")
    collect_cycles_rarely()
    app.include_router(router)
    app.include_router(adapter_router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                event_schema_components()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
