"""How each chat platform's answer is read: sent, worth another try, or refused for good.

The answers are those the platforms document or are seen to send (wallboard.md 6.1–6.6):
Feishu throttles with HTTP 400 as well as 200, a Teams connector reports its failures as
text in a 200, and ``Retry-After`` comes in seconds or as an HTTP date.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from services.api.channels.delivery import read_answer, retry_after_seconds
from services.api.channels.schemas import Kind


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else orjson.dumps(body)
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(
    ("kind", "status", "body", "outcome"),
    [
        (Kind.wecom, 200, {"errcode": 0, "errmsg": "ok"}, "sent"),
        (Kind.wecom, 200, {"errcode": 45009, "errmsg": "api freq out of limit"}, "retry"),
        (Kind.wecom, 200, {"errcode": 93000, "errmsg": "invalid webhook url"}, "rejected"),
        (Kind.dingtalk, 200, {"errcode": 130101, "errmsg": "send too fast"}, "retry"),
        (Kind.dingtalk, 200, {"errcode": 310000, "errmsg": "sign not match"}, "rejected"),
        (Kind.feishu, 200, {"code": 0, "msg": "success"}, "sent"),
        (Kind.feishu, 200, {"StatusCode": 0, "StatusMessage": "success"}, "sent"),
        (Kind.feishu, 200, {"code": 11232, "msg": "frequency limited"}, "retry"),
        (Kind.feishu, 400, {"code": 11232, "msg": "frequency limited"}, "retry"),
        (Kind.feishu, 400, {"code": 9499, "msg": "too many request"}, "retry"),
        (Kind.feishu, 400, {"code": 9499, "msg": "Bad Request"}, "rejected"),
        (Kind.feishu, 400, {"code": 19021, "msg": "sign match fail"}, "rejected"),
        (Kind.feishu, 400, "<html>Bad Request</html>", "rejected"),
        (Kind.feishu, 502, "Bad Gateway", "retry"),
        (Kind.slack, 200, "ok", "sent"),
        (Kind.slack, 400, "invalid_payload", "rejected"),
        (Kind.slack, 404, "no_service", "rejected"),
        (Kind.teams, 202, "", "sent"),
        (Kind.teams, 200, "1", "sent"),
        (
            Kind.teams,
            200,
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
            "HTTP error 429 with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,"
            "cv=deadbeef.0.",
            "retry",
        ),
        (
            Kind.teams,
            200,
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
            "HTTP error 413 with ContextId tcid=0.",
            "rejected",
        ),
        (Kind.teams, 401, {"error": {"code": "DirectApiAuthorizationRequired"}}, "rejected"),
        (Kind.webhook, 204, "", "sent"),
    ],
)
def test_each_platforms_answer(kind: Kind, status: int, body: Any, outcome: str) -> None:
    assert read_answer(kind, _answer(status, body)).outcome == outcome


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("30", now) == 30.0
    assert retry_after_seconds("Fri, 04 Dec 2026 10:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Fri, 04 Dec 2026 09:59:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    answer = read_answer(Kind.slack, _answer(429, "rate_limited", {"Retry-After": "7"}))
    assert (answer.outcome, answer.retry_after) == ("retry", 7.0)
