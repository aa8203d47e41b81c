"""One exception type carrying its HTTP status, and the one error body every service returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any | None = None


class ErrorBody(BaseModel):
    """``{"error": {"code", "message", "details"}}``"""

    error: ErrorDetail


class CallboardError(Exception):
    """Base of every error a caller can see. Subclasses name their status and code:
    ``class NotFound(CallboardError, status=404, code="not_found")``."""

    status_code = 400
    code = "bad_request"

    def __init_subclass__(
        cls, *, status: int | None = None, code: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.code = code

    def __init__(
        self,
        message: str,
        *,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        # Top-level fields some responses add beside "error" (ingest's accepted/rejected).
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error = ErrorDetail(code=self.code, message=self.message, details=self.details)
        return {"error": error.model_dump(exclude_none=True), **self.extra}


class InvalidInput(CallboardError, status=422, code="invalid_input"):
    """Values that cannot be used; the message says what to change."""


class NotFound(CallboardError, status=404, code="not_found"):
    """What the request names does not exist."""


class PayloadTooLarge(CallboardError, status=413, code="payload_too_large"):
    """A body larger than a request may carry."""


class UnsupportedMediaType(CallboardError, status=415, code="unsupported_media_type"):
    """A body in a content type the route does not read."""


class Unauthorized(CallboardError, status=401, code="unauthorized"):
    """Missing or invalid credentials."""


class Forbidden(CallboardError, status=403, code="forbidden"):
    """Not allowed for these credentials."""


class ServiceUnavailable(CallboardError, status=503, code="unavailable"):
    def __init__(self, message: str, *, retry_after: int = 5, details: Any | None = None) -> None:
        super().__init__(message, details=details, headers=_retry_after(retry_after))


class RateLimited(CallboardError, status=429, code="rate_limited"):
    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(
            message, details={"retry_after": retry_after}, headers=_retry_after(retry_after)
        )


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "Missing or invalid credentials"),
        (403, "Not allowed for these credentials"),
        (422, "Invalid input; the message says what to change"),
        (429, "Too many requests for this key; retry after the Retry-After seconds"),
        (503, "A dependency is unavailable; retry after the Retry-After seconds"),
    )
}
