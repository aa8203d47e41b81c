"""What both HTTP services share: the error handler, request ids, metrics, health routes."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from shared.errors import CallboardError, ErrorBody, ErrorDetail
from shared.logs import request_id_var

log = logging.getLogger(__name__)

REQUEST_SECONDS = Histogram(
    "callboard_http_request_seconds",
    "HTTP request latency by route",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter(
    "callboard_http_errors_total",
    "Requests refused or failed, by error code (unauthorized, rate_limited, invalid_input...)",
    ["service", "code"],
)
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is echoed into logs and Kafka headers: keep it short and printable.
_REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


class Health(BaseModel):
    status: Literal["ok"]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JsonResponse(JSONResponse):
    """JSON rendered with orjson; decimals become strings, never binary floats.

    A JSONResponse, so that FastAPI documents each route's response model in OpenAPI
    (for any other response class it documents a bare string).
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _error(status: int, code: str, message: str, details: object = None) -> JsonResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    return JsonResponse(body.model_dump(exclude_none=True), status_code=status)


def install_common(app: FastAPI, service: str) -> None:
    """Error handlers, request-id and latency middleware, and ``/metrics``."""
    # Starlette answers a path with a stray trailing slash with a redirect built from the
    # request's Host header, which a caller controls: a plain 404 instead.
    app.router.redirect_slashes = False

    @app.exception_handler(CallboardError)
    async def _callboard_error(_request: Request, exc: CallboardError) -> Response:
        ERRORS.labels(service, exc.code).inc()
        return JsonResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        details = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p not in ("query", "body")),
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        ERRORS.labels(service, "invalid_input").inc()
        return _error(422, "invalid_input", "the request has invalid parameters", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # A body FastAPI cannot even parse: the same answer as any other invalid input.
            ERRORS.labels(service, "invalid_input").inc()
            return _error(422, "invalid_input", f"the request body cannot be read: {exc.detail}")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        ERRORS.labels(service, code).inc()
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        ERRORS.labels(service, "internal_error").inc()
        return _error(500, "internal_error", "an internal error occurred; it has been logged")

    @app.middleware("http")
    async def _request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get(REQUEST_ID_HEADER)
        request_id = given if given and _REQUEST_ID_SHAPE.match(given) else uuid.uuid4().hex
        request.state.request_id = request_id
        request_id_var.set(request_id)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        REQUEST_SECONDS.labels(
            service, request.method, getattr(route, "path", "unmatched"), response.status_code
        ).observe(time.perf_counter() - started)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"], response_model=Health)
    def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")
