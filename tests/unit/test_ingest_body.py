"""How ingest reads a body into raw events, before any event is validated."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.ingest.service import UnreadableLine, parse_body
from shared.errors import InvalidInput
from shared.events import BaseEvent, validate_event

SALE = (
    b'{"event_id": "%s", "type": "sale.closed", "occurred_at": "2026-11-24T15:59:00+08:00",'
    b' "agent_id": "a-1", "lead_id": "l-1", "order_id": "%s", "amount": %s}'
)


def _sale(event_id: str, amount: str) -> bytes:
    return SALE % (event_id.encode(), event_id.encode(), amount.encode())


def test_a_number_beyond_a_float_is_refused_by_its_event_alone() -> None:
    body = b"[" + _sale("s-1", "1e400") + b"," + _sale("s-2", "1234567890123.4567") + b"]"
    first, second = parse_body(body, "application/json")
    assert first["amount"] == Decimal("1E+400")
    assert second["amount"] == Decimal("1234567890123.4567")  # exact, not a float
    refused = validate_event(first)
    assert isinstance(refused, list)
    assert [error.field for error in refused] == ["amount"]
    accepted = validate_event(second)
    assert isinstance(accepted, BaseEvent)


def test_each_line_of_ndjson_is_read_alone() -> None:
    body = _sale("s-1", "-1e400") + b"\n" + _sale("s-2", "10") + b"\nnot json\n"
    first, second, third = parse_body(body, "application/x-ndjson")
    assert first["amount"] == Decimal("-1E+400")
    assert second["amount"] == 10
    assert isinstance(third, UnreadableLine)


@pytest.mark.parametrize(
    "body",
    [
        b"[" + _sale("s-1", "1e400") + b", NaN]",
        b"[" + _sale("s-1", "1e400") + b", Infinity]",
        b"[" + _sale("s-1", "1e400"),
        b"[NaN]",
    ],
)
def test_what_is_not_json_still_refuses_the_body(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_body(body, "application/json")
