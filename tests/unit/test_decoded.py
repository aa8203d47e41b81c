"""The aggregator's typed events (``services/aggregator/decoded.py``) and the policy's answer
about the records the applier cannot apply (``services/aggregator/policy.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.aggregator.decoded import decode
from services.aggregator.outcomes import Problem, Record
from services.aggregator.policy import set_aside_every_problem, set_aside_non_events

CALL = {
    "event_id": "e-1",
    "type": "call.ended",
    "occurred_at": "2026-11-02T09:30:00+08:00",
    "agent_id": "a-7",
    "team_id": "t-1",
    "campaign_id": "c-2",
    "call_id": "c-981",
    "lead_id": "l-5",
    "talk_seconds": "85.5",
    "source": "dialer",
}


def test_a_call_event_is_read_once_with_its_entity_and_its_utc_time() -> None:
    event = decode(CALL)
    assert event.key == "call:c-981"
    assert event.ts == "2026-11-02T01:30:00.000000+00:00"
    assert (event.agent_id, event.team_id, event.campaign_id, event.lead_id) == (
        "a-7",
        "t-1",
        "c-2",
        "l-5",
    )
    # Values stay as ingest wrote them: the merge stores them in the call's state.
    assert event.talk_seconds == "85.5"
    assert event.wrap_seconds is None
    assert event.fields is None


def test_a_quote_is_its_whole_state_without_its_local_time() -> None:
    raw = {
        "event_id": "q-1",
        "type": "quote.given",
        "occurred_at": "2026-11-02T09:30:00-05:00",
        "agent_id": "a-7",
        "lead_id": "l-5",
        "amount": "120.00",
    }
    event = decode(raw)
    assert event.key == "quote:q-1"
    assert event.ts == "2026-11-02T14:30:00.000000+00:00"
    assert event.fields == {
        "event_id": "q-1",
        "type": "quote.given",
        "agent_id": "a-7",
        "lead_id": "l-5",
        "amount": "120.00",
    }


def test_an_agent_state_change_carries_its_instant_in_utc() -> None:
    raw = {
        "event_id": "s-1",
        "type": "agent.state_changed",
        "occurred_at": "2026-11-02T09:30:00+08:00",
        "agent_id": "a-7",
        "state": "paused",
        "reason": "lunch",
    }
    event = decode(raw)
    assert event.key is None
    assert event.occurred_at == datetime(2026, 11, 2, 1, 30, tzinfo=UTC)
    assert (event.state, event.reason) == ("paused", "lunch")


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ({k: v for k, v in CALL.items() if k != "call_id"}, KeyError, "'call_id'"),
        ({**CALL, "occurred_at": "yesterday"}, ValueError, "Invalid isoformat string"),
        (
            {"event_id": "v-1", "type": "survey.completed", "call_id": "c-1"}
            | {"occurred_at": "2026-11-02T09:30:00Z", "agent_id": "a-7"},
            KeyError,
            "'score'",
        ),
    ],
)
def test_an_event_the_merge_cannot_take_raises_what_the_merge_would(
    raw: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        decode(raw)


RECORD = Record(0, 7, b"{}")


def test_records_that_are_no_event_are_set_aside_whoever_is_blamed() -> None:
    undecodable = Problem(RECORD, "undecodable: ValueError: not an event object")
    assert set_aside_non_events(undecodable)
    assert set_aside_every_problem(undecodable)


def test_an_error_is_set_aside_only_once_the_records_are_blamed() -> None:
    raised = KeyError("call_id")
    problem = Problem(RECORD, "no entity: KeyError: 'call_id'", raised)
    assert not set_aside_non_events(problem)
    assert set_aside_every_problem(problem)
