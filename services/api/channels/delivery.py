"""Sending a digest: signing, each platform's answer read, retries, and its rate limit.

The platforms answer differently. WeCom, DingTalk and Feishu answer with the error in the body
(``errcode`` / ``code``), mostly with HTTP 200 and Feishu also with 400: only 0 is success.
Their rate-limit codes (WeCom 45009, DingTalk 130101 and 410100 and -1 busy, Feishu 11232 and
9499 "too many request"), HTTP 429, 5xx and timeouts are retried with backoff
(``Retry-After`` when given, in seconds or as an HTTP date); any other error (bad token, bad
signature, keyword, IP, a refused body) is permanent: retrying cannot help, so the delivery
stops and says why. A Teams connector answers 200 with its failure as text ("Webhook message
delivery failed ..."): that is no success either.

The URL and the secret are credentials: they are never logged, and a failure's detail holds
the platform's code and message, never the URL (httpx's own request log is silenced).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote_plus, urlsplit, urlunsplit

import httpx
import orjson
from prometheus_client import Counter
from sqlalchemy import Engine

from services.api.channels.repository import Channel, reserve_send
from services.api.channels.schemas import Kind

log = logging.getLogger(__name__)
# httpx logs every request's URL at INFO; a webhook URL holds its token.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

DELIVERIES = Counter(
    "callboard_channel_deliveries",
    "Digests finished, by channel, trigger (schedule, manual, test) and outcome "
    "(sent, failed after retries, rejected by the platform)",
    ["channel", "trigger", "outcome"],
)

OUTCOMES = ("sent", "failed", "rejected")

# The least time between two messages to one channel (wallboard.md 6.7): WeCom and DingTalk
# allow 20 a minute per robot (DingTalk then blocks for 10 minutes), Feishu 100 a minute and
# 5 a second, Slack about 1 a second, Teams connectors 60 in 30 seconds (4 a second at most).
MIN_INTERVAL = {
    Kind.wecom: 3.0,
    Kind.dingtalk: 3.0,
    Kind.feishu: 0.6,
    Kind.slack: 1.0,
    Kind.teams: 0.5,
    Kind.webhook: 0.0,
}
RETRYABLE_CODES = {
    Kind.wecom: {45009, -1},
    Kind.dingtalk: {130101, 410100, -1},
    Kind.feishu: {11232},
}


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: HMAC-SHA256 of ``timestamp + "\\n" + secret`` keyed by the secret,
    Base64, URL-encoded, added to the query with the timestamp in milliseconds."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    sign = quote_plus(base64.b64encode(digest))
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}timestamp={timestamp_ms}&sign={sign}"))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu: ``timestamp + "\\n" + secret`` is the HMAC-SHA256 key of an empty message;
    Base64, not URL-encoded; timestamp in seconds; both go in the JSON body."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: str  # sent, retry or rejected
    detail: str | None = None
    retry_after: float | None = None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _coded_answer(kind: Kind, status: int, body: object, excerpt: str) -> Answer:
    """A WeCom, DingTalk or Feishu answer from the code in its body."""
    if not isinstance(body, dict):
        return Answer("rejected", f"HTTP {status} unreadable answer: {excerpt}".strip())
    if kind is Kind.feishu:
        code = body.get("code", body.get("StatusCode"))
        message = body.get("msg", body.get("StatusMessage"))
    else:
        code, message = body.get("errcode"), body.get("errmsg")
    if code == 0 and status < 400:
        return Answer("sent")
    detail = f"{code} {message}"
    throttled = kind is Kind.feishu and code == 9499 and "too many" in str(message).lower()
    if code in RETRYABLE_CODES[kind] or throttled:
        return Answer("retry", detail)
    return Answer("rejected", detail)


TEAMS_FAILURE = "webhook message delivery failed"


def read_answer(kind: Kind, response: httpx.Response) -> Answer:
    """What the platform's answer means: sent, worth retrying, or a permanent refusal."""
    status = response.status_code
    excerpt = response.text[:200]
    if status == 429 or status >= 500:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        return Answer("retry", f"HTTP {status} {excerpt}".strip(), wait)
    if kind in RETRYABLE_CODES:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return Answer("rejected", f"HTTP {status} unreadable answer: {excerpt}".strip())
        return _coded_answer(kind, status, body, excerpt)
    if status >= 400:
        return Answer("rejected", f"HTTP {status} {excerpt}".strip())
    if kind is Kind.teams and excerpt.lower().startswith(TEAMS_FAILURE):
        # A connector's failure, answered 200; throttling (its 429) is worth another try.
        return Answer("retry" if "429" in excerpt else "rejected", excerpt)
    return Answer("sent")


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome: str  # sent, failed or rejected
    attempts: int
    detail: str | None


class Sender:
    """Posts messages to channels, one at a time per channel and no faster than its
    platform allows (across processes when given the database's ``engine``); ``attempts``
    tries with exponential backoff from ``backoff_seconds``."""

    def __init__(
        self,
        *,
        attempts: int = 5,
        backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 120.0,
        timeout_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.sleep = sleep
        self._last_turn: dict[str, float] = {}  # by robot (URL), when its last turn began
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _pace(self, subject: Channel) -> None:
        """Waits for the turn of the channel's robot: channels posting to one URL share it."""
        interval = MIN_INTERVAL[subject.kind]
        if self.engine is not None:
            # Shared by every process through the channel table.
            start = reserve_send(
                self.engine, subject.name, subject.url, timedelta(seconds=interval)
            )
            wait = (start - datetime.now(UTC)).total_seconds()
            if wait > 0:
                self.sleep(wait)
            return
        with self._guard:
            now = time.monotonic()
            turn = max(now, self._last_turn.get(subject.url, -1e9) + interval)
            self._last_turn[subject.url] = turn
        if turn > now:
            self.sleep(turn - now)

    def _post(self, client: httpx.Client, subject: Channel, payload: dict[str, Any]) -> Answer:
        url = subject.url
        body = dict(payload)
        if subject.secret and subject.kind is Kind.dingtalk:
            url = dingtalk_signed_url(url, subject.secret, int(time.time() * 1000))
        elif subject.secret and subject.kind is Kind.feishu:
            now = int(time.time())
            body = {"timestamp": str(now), "sign": feishu_sign(subject.secret, now), **body}
        try:
            response = client.post(
                url,
                content=orjson.dumps(body),
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
        except httpx.TimeoutException:
            return Answer("retry", "timed out")
        except httpx.TransportError as exc:
            # The exception's text may hold the URL: only its kind is kept.
            return Answer("retry", f"could not connect ({type(exc).__name__})")
        return read_answer(subject.kind, response)

    def send(self, subject: Channel, payload: dict[str, Any], trigger: str) -> Outcome:
        with (
            self._lock(subject.name),
            httpx.Client(
                timeout=self.timeout_seconds, follow_redirects=False, trust_env=False
            ) as client,
        ):
            answer = Answer("retry")
            attempt = 0
            while attempt < self.attempts:
                attempt += 1
                self._pace(subject)
                answer = self._post(client, subject, payload)
                log.info(
                    "channel delivery attempt",
                    extra={
                        "channel": subject.name,
                        "attempt": attempt,
                        "answer": answer.outcome,
                        "detail": answer.detail,
                    },
                )
                if answer.outcome != "retry" or attempt == self.attempts:
                    break
                backoff = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
                self.sleep(max(backoff, min(answer.retry_after or 0, self.max_backoff_seconds)))
        outcome = {"sent": "sent", "rejected": "rejected"}.get(answer.outcome, "failed")
        DELIVERIES.labels(subject.name, trigger, outcome).inc()
        return Outcome(outcome, attempt, answer.detail)
