"""Bounds on the requests one API process serves at once, in total and per caller.

Sync routes run in a pool of worker threads and read through a pool of database
connections. Without a bound, a burst from one key fills both: threads wait for connections
held by requests that wait for threads, and every caller waits. Here a request is admitted
only while fewer than ``max_requests_in_flight`` are being served (503 otherwise) and its
caller, a key or a client address, has fewer than ``max_requests_in_flight_per_key`` (429
otherwise), both answered at once with ``Retry-After``. The worker threads are sized above
the total (``ApiSettings.worker_threads``), so an admitted request always finds a thread to
finish on. Live streams stay open for hours and hold no connection between their updates:
they do not count.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import CallboardError, RateLimited, ServiceUnavailable
from shared.http import ERRORS, JsonResponse

# Never bounded: the live stream (long-lived), and what a supervisor probes.
EXEMPT_PATHS = frozenset({"/v1/stream", "/healthz", "/metrics"})
RETRY_AFTER_SECONDS = 1


def caller_of(scope: Scope) -> str:
    """The key a request carries (by its hash: no secret kept), else its client address."""
    headers = dict(scope.get("headers") or [])
    credential = (headers.get(b"authorization") or headers.get(b"x-api-key") or b"").strip()
    scheme, _, value = credential.partition(b" ")
    if scheme.lower() == b"bearer" and value.strip():
        credential = value.strip()
    if credential:
        return "key:" + hashlib.sha256(credential).hexdigest()[:32]
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class InFlightLimit:
    """Pure ASGI middleware: the count lasts until the response has been sent."""

    def __init__(self, app: ASGIApp, *, total: int, per_caller: int) -> None:
        self.app = app
        self.total = total
        self.per_caller = per_caller
        self.in_flight = 0
        self.by_caller: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope)
        # One event loop serves every request of the process: no lock is needed between the
        # checks and the counts, as nothing awaits in between.
        refusal: CallboardError | None = None
        if self.by_caller[caller] >= self.per_caller:
            refusal = RateLimited(
                f"too many requests in flight for this caller: at most {self.per_caller} at "
                "once; retry after the Retry-After seconds",
                retry_after=RETRY_AFTER_SECONDS,
            )
        elif self.in_flight >= self.total:
            refusal = ServiceUnavailable(
                f"the API is serving its limit of {self.total} requests at once; retry after "
                "the Retry-After seconds",
                retry_after=RETRY_AFTER_SECONDS,
            )
        if refusal is not None:
            ERRORS.labels("api", refusal.code).inc()
            response = JsonResponse(
                refusal.body(), status_code=refusal.status_code, headers=refusal.headers
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        self.by_caller[caller] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.by_caller[caller] -= 1
            if not self.by_caller[caller]:
                del self.by_caller[caller]
