"""The event schema v1: what is accepted, what is rejected and how the rejection reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from shared.events import BaseEvent, CallStarted, FieldError, SaleClosed, validate_event

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def _validate(raw: Any) -> BaseEvent | list[FieldError]:
    return validate_event(raw, now=NOW, future_tolerance=timedelta(minutes=5))


def _errors(raw: Any) -> dict[str, str]:
    outcome = _validate(raw)
    assert isinstance(outcome, list), f"expected a rejection, got {outcome!r}"
    return {e.field: e.message for e in outcome}


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "call.started",
        "occurred_at": "2026-11-24T15:59:00+08:00",
        "agent_id": "a-1",
        "call_id": "c-1",
        **fields,
    }


def test_a_call_start_gets_its_defaults() -> None:
    event = _validate(_event(lead_id="L-1"))
    assert isinstance(event, BaseEvent)
    assert event.model_dump(mode="json", exclude_none=True)["direction"] == "outbound"
    assert event.occurred_at == datetime(2026, 11, 24, 7, 59, tzinfo=UTC)


def test_a_dialer_drop_needs_no_agent() -> None:
    raw = _event()
    del raw["agent_id"]
    assert isinstance(_validate(raw), BaseEvent)


def test_a_sale_needs_its_agent_lead_order_and_amount() -> None:
    errors = _errors({"event_id": "s", "type": "sale.closed", "occurred_at": NOW.isoformat()})
    assert set(errors) == {"agent_id", "lead_id", "order_id", "amount"}
    assert errors["amount"] == "is required"


def test_money_is_decimal_and_exact() -> None:
    sale = _validate(
        {
            "event_id": "s",
            "type": "sale.closed",
            "occurred_at": NOW.isoformat(),
            "agent_id": "a",
            "lead_id": "L",
            "order_id": "o",
            "amount": "1999.99",
            "margin": 0.1,
        }
    )
    assert isinstance(sale, SaleClosed)
    assert sale.amount == Decimal("1999.99")
    assert sale.margin == Decimal("0.1")


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"occurred_at": "2026-11-24T08:00:00"}, "occurred_at", "UTC offset"),
        ({"occurred_at": 1795507200}, "occurred_at", "RFC 3339"),
        ({"occurred_at": "1795507200"}, "occurred_at", "RFC 3339"),
        ({"occurred_at": "2026-11-24T08:10:00+00:00"}, "occurred_at", "in the future"),
        ({"agent_id": "x" * 65}, "agent_id", "at most 64"),
        ({"direction": "sideways"}, "direction", "outbound"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"lead_id": "13912345678"}, "lead_id", "phone number"),
        ({"lead_id": "someone@example.com"}, "lead_id", "e-mail"),
        ({"event_id": ""}, "event_id", "at least 1"),
    ],
)
def test_bad_fields_are_named_with_a_reason(
    fields: dict[str, Any], field: str, fragment: str
) -> None:
    errors = _errors(_event(**fields))
    assert field in errors, errors
    assert fragment in errors[field]


def test_a_field_named_like_personal_data_is_refused() -> None:
    errors = _errors(_event(phone="123"))
    assert "personal data" in errors["phone"]
    # Each is named, and the other unknown fields with them.
    errors = _errors(_event(customer_email="x", mobile="1", colour="red"))
    assert set(errors) == {"customer_email", "mobile", "colour"}
    assert "personal data" in errors["mobile"] and "unknown field" in errors["colour"]


def test_the_models_refuse_a_field_named_like_personal_data_themselves() -> None:
    # Read without validate_event (events read back, adapters' output): the model says which.
    with pytest.raises(ValidationError, match="field 'caller_phone' looks like personal data"):
        CallStarted.model_validate(_event(colour="red", caller_phone="x"))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CallStarted.model_validate(_event(colour="red"))


@pytest.mark.parametrize("value", [[], {}, 7, True])
def test_a_type_that_is_not_text_is_refused_by_name(value: Any) -> None:
    errors = _errors(_event(type=value))
    assert set(errors) == {"type"}
    assert "must be a string" in errors["type"]


def test_unknown_type_lists_the_known_ones() -> None:
    errors = _errors(_event(type="call.teleported"))
    assert "call.completed" in errors["type"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "survey.completed", "score": 6}, "score"),
        ({"type": "survey.completed", "score": 0}, "score"),
        ({"type": "call.ended", "talk_seconds": -1}, "talk_seconds"),
        ({"type": "call.ended"}, "talk_seconds"),
        ({"type": "lead.stage_changed", "lead_id": "L", "stage": "warm"}, "stage"),
        ({"type": "agent.state_changed", "state": "napping"}, "state"),
        ({"type": "sale.cancelled"}, "order_id"),
    ],
)
def test_type_specific_rules(raw: dict[str, Any], field: str) -> None:
    assert field in _errors(_event(**raw))


def test_a_non_object_is_rejected() -> None:
    assert _errors(["not", "an", "event"]) == {"(event)": "each event must be a JSON object"}


@pytest.mark.parametrize(
    ("occurred_at", "accepted"),
    [
        ("2026-11-24T15:59:00+08:00", True),
        ("2026-11-24T07:59:00.250Z", True),
        ("2026-11-24t07:59:00z", True),  # RFC 3339: "T" and "Z" may be lower case
        ("2026-11-24 15:59:00+08:00", True),  # ... and a space may stand for the "T"
        ("2026-11-24T15:59+08:00", False),  # no seconds
        ("2026-11-24T15:59:00+0800", False),  # offset without its colon
        ("2026-11-24T15:59:00+08", False),
        ("2026-11-24T07:59:00Z\n", False),
        ("2026-11-24T07:59:00 Z", False),
        ("2026-11-24", False),
    ],
)
def test_a_time_is_an_rfc_3339_date_time(occurred_at: str, accepted: bool) -> None:
    outcome = _validate(_event(occurred_at=occurred_at))
    if accepted:
        assert isinstance(outcome, CallStarted), outcome
        assert outcome.occurred_at == datetime(2026, 11, 24, 7, 59, tzinfo=UTC) + timedelta(
            milliseconds=250 if ".250" in occurred_at else 0
        )
    else:
        assert _errors(_event(occurred_at=occurred_at)) == {
            "occurred_at": "must be an RFC 3339 timestamp with seconds and a UTC offset "
            "(Z or ±hh:mm), e.g. 2026-11-02T09:30:00+08:00"
        }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "call.answered", "contact_reached": "yes"}, "contact_reached"),
        ({"type": "call.answered", "contact_reached": 1}, "contact_reached"),
        ({"type": "call.answered", "contact_reached": "false"}, "contact_reached"),
        ({"type": "call.ended", "talk_seconds": 5, "resolved": 0}, "resolved"),
        ({"type": "call.completed", "answered": "true"}, "answered"),
    ],
)
def test_a_bool_is_true_or_false_only(raw: dict[str, Any], field: str) -> None:
    assert _errors(_event(**raw)) == {field: "must be JSON true or false (not text or a number)"}
    # The same event with JSON's own value is accepted.
    fixed = {**raw, field: False}
    outcome = _validate(_event(**fixed))
    assert isinstance(outcome, BaseEvent), outcome
    assert getattr(outcome, field) is False
