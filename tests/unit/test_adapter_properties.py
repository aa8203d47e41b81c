"""A call's native records in any order, any number of times, count the same.

Each system's records of generated calls are translated, validated as ingest does, and
merged by the aggregator's merge in a drawn order with drawn repeats; the calls' KPI
contributions must equal those of the records merged once in the order they were written.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, cast
from urllib.parse import quote
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.decoded import decode
from services.aggregator.facts import State, contribution, merge
from services.ingest.adapters import asterisk, connect, freeswitch, twilio, vicidial
from services.ingest.adapters.common import AdapterContext
from shared.events import BaseEvent, validate_event
from tests import adapter_floor as floor

ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 2, 9, 0, tzinfo=ZONE)
CONTEXT = AdapterContext.create("Asia/Shanghai", "property-tests-lead-secret-0123")
ROSTER = asterisk.Roster(
    {f"10{n:02d}": asterisk.RosterEntry(f"agent-{n}", f"team-{n % 2}") for n in range(4)}
)
CALLS = floor.generate(11, START, 40)
CDR_OUTCOMES = ("human", "busy", "no_answer", "failed", "inbound_human", "inbound_abandoned")

Record = Callable[[], list[dict[str, Any]]]


def _records(system: str) -> list[Record]:
    rng = random.Random(3)
    out: list[Record] = []
    for call in CALLS:
        if system == "twilio":
            for query, form in floor.twilio_callbacks(call, rng):
                out.append(partial(twilio.translate, {**query, **form}, CONTEXT))
        elif system == "vicidial":
            for route, query in floor.vicidial_urls(call):
                out.append(partial(vicidial.translate, cast(vicidial.Kind, route), query, CONTEXT))
        elif system == "connect":
            for record in floor.connect_records(call):
                out.append(partial(connect.translate, record, CONTEXT))
        elif system == "freeswitch" and call.outcome in CDR_OUTCOMES:
            for leg in floor.freeswitch_legs(call):
                encoded = {"variables": {k: quote(v) for k, v in leg["variables"].items()}}
                out.append(partial(freeswitch.translate, encoded, CONTEXT))
        elif system == "asterisk" and call.outcome in CDR_OUTCOMES:
            for line in floor.asterisk_lines(call, ZONE, 4):
                out.append(partial(asterisk.translate, line, CONTEXT, ROSTER))
    return out


def _stored(raw: dict[str, Any]) -> dict[str, Any]:
    """The event as the aggregator reads it back from Kafka (adapters store only the fields
    their translation gave)."""
    event = validate_event(raw)
    assert isinstance(event, BaseEvent), (raw, event)
    stored: dict[str, Any] = json.loads(
        event.model_dump_json(exclude_none=True, exclude_unset=True)
    )
    return stored


def _kpis(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    states: dict[str, State] = {}
    for raw in events:
        event = decode(raw)
        key = event.key
        assert key is not None
        states[key] = merge(states.get(key), event)
    totals: Counter[tuple[str, str]] = Counter()
    for state in states.values():
        for (_, scope), row in contribution(state, 60).counters.items():
            for name, value in row.items():
                totals[(scope[0], name)] += value
    return totals


SYSTEMS = ("twilio", "vicidial", "connect", "freeswitch", "asterisk")
EVENTS = {
    system: [[_stored(e) for e in record()] for record in _records(system)] for system in SYSTEMS
}
REFERENCE = {system: _kpis([e for record in EVENTS[system] for e in record]) for system in SYSTEMS}


@settings(max_examples=60, deadline=None)
@given(system=st.sampled_from(SYSTEMS), seed=st.integers(0, 2**32 - 1))
def test_records_in_any_order_and_repeated_count_the_same(system: str, seed: int) -> None:
    rng = random.Random(seed)
    records = EVENTS[system]
    drawn = records + [rng.choice(records) for _ in range(rng.randrange(len(records)))]
    rng.shuffle(drawn)
    assert _kpis([e for record in drawn for e in record]) == REFERENCE[system]


def test_the_reference_counts_every_call() -> None:
    for system in SYSTEMS:
        calls = [
            c
            for c in CALLS
            if system not in ("freeswitch", "asterisk") or c.outcome in CDR_OUTCOMES
        ]
        dials = sum(v for (_, name), v in REFERENCE[system].items() if name == "dials")
        inbound = sum(v for (_, name), v in REFERENCE[system].items() if name == "inbound_calls")
        assert dials == sum(1 for c in calls if not c.inbound), system
        assert inbound == sum(1 for c in calls if c.inbound), system


# Twilio: a <Dial> child leg and its parent --------------------------------------------------

PARENT_SID = "CA" + "1" * 32
CHILD_SID = "CA" + "2" * 32
CUSTOMER = "+8613800138000"
AGENT_PHONE = "client:agent-7"


def _callback(
    sid: str, status: str, sequence: int, at: str, direction: str, **extra: str
) -> dict[str, str]:
    return {
        "CallSid": sid,
        "CallStatus": status,
        "SequenceNumber": str(sequence),
        "Timestamp": f"Mon, 02 Nov 2026 {at} +0000",
        "Direction": direction,
        "agent_id": "agent-7",
        "team_id": "team-1",
        **extra,
    }


def _dial_legs(
    parent_direction: str, parent_from: str, parent_to: str, child_to: str
) -> list[dict[str, str]]:
    """A parent leg (answered at 01:00:00, ended 01:01:10) whose <Dial> child rings from
    01:00:05, is answered at 01:00:12 and talks 55 s."""
    parent = {"From": parent_from, "To": parent_to}
    child = {"From": parent_from, "To": child_to, "ParentCallSid": PARENT_SID}
    return [
        _callback(PARENT_SID, "ringing", 0, "01:00:00", parent_direction, **parent),
        _callback(PARENT_SID, "in-progress", 1, "01:00:00", parent_direction, **parent),
        _callback(
            PARENT_SID, "completed", 2, "01:01:10", parent_direction, CallDuration="70", **parent
        ),
        _callback(CHILD_SID, "initiated", 0, "01:00:05", "outbound-dial", **child),
        _callback(CHILD_SID, "ringing", 1, "01:00:05", "outbound-dial", **child),
        _callback(CHILD_SID, "in-progress", 2, "01:00:12", "outbound-dial", **child),
        _callback(
            CHILD_SID, "completed", 3, "01:01:07", "outbound-dial", CallDuration="55", **child
        ),
    ]


def _every_order(callbacks: list[dict[str, str]]) -> set[tuple[tuple[tuple[str, str], Any], ...]]:
    """The distinct KPI totals of the legs' callbacks merged in every order."""
    translated = [[_stored(e) for e in twilio.translate(cb, CONTEXT)] for cb in callbacks]
    outcomes = set()
    for order in itertools.permutations(range(len(translated))):
        totals = _kpis([e for i in order for e in translated[i]])
        outcomes.add(tuple(sorted(totals.items())))
    return outcomes


def test_inbound_call_dialing_an_agent_is_inbound_in_every_order() -> None:
    # The customer calls in (Direction inbound); the <Dial> child leg rings the agent's app.
    outcomes = _every_order(_dial_legs("inbound", CUSTOMER, "+862100000000", AGENT_PHONE))
    assert len(outcomes) == 1
    totals = dict(outcomes.pop())
    assert totals.get(("agent-7", "inbound_calls"), 0) == 1
    assert totals.get(("agent-7", "dials"), 0) == 0
    assert totals.get(("agent-7", "inbound_connects"), 0) == 1
    assert totals.get(("agent-7", "abandoned"), 0) == 0
    assert totals.get(("agent-7", "talk_seconds"), 0) == 55_000  # the child's CallDuration, in ms


def test_outbound_call_through_a_child_leg_is_outbound_in_every_order() -> None:
    # A REST call to the agent (outbound-api) whose <Dial> child rings the customer.
    outcomes = _every_order(_dial_legs("outbound-api", "+862100000000", AGENT_PHONE, CUSTOMER))
    assert len(outcomes) == 1
    totals = dict(outcomes.pop())
    assert totals.get(("agent-7", "dials"), 0) == 1
    assert totals.get(("agent-7", "inbound_calls"), 0) == 0
    assert totals.get(("agent-7", "connects"), 0) == 1
    assert totals.get(("agent-7", "talk_seconds"), 0) == 55_000


def test_agent_app_calling_out_is_outbound_in_every_order() -> None:
    # The agent's Twilio Client app places the call: Twilio sees it as inbound from
    # client:..., and its <Dial> child rings the customer.
    outcomes = _every_order(_dial_legs("inbound", AGENT_PHONE, CUSTOMER, CUSTOMER))
    assert len(outcomes) == 1
    totals = dict(outcomes.pop())
    assert totals.get(("agent-7", "dials"), 0) == 1
    assert totals.get(("agent-7", "inbound_calls"), 0) == 0
    assert totals.get(("agent-7", "connects"), 0) == 1
    assert totals.get(("agent-7", "talk_seconds"), 0) == 55_000


def test_child_leg_events_carry_no_direction() -> None:
    child = _dial_legs("inbound", CUSTOMER, "+862100000000", AGENT_PHONE)[3:]
    for callback in child:
        for event in twilio.translate(callback, CONTEXT):
            assert event["call_id"] == PARENT_SID
            assert "direction" not in _stored(event)


def test_a_machine_found_after_the_answered_callback_counts_in_every_order() -> None:
    # AMD's result reaches the call's Url and the completed callback, not the answered one:
    # in-progress without AnsweredBy, completed with machine_end_beep (its CallDuration puts
    # its occurred_at on the answer's second).
    sid = "CA" + "3" * 32
    legs = [
        _callback(sid, "initiated", 0, "02:00:00", "outbound-api", To=CUSTOMER),
        _callback(sid, "in-progress", 1, "02:00:10", "outbound-api", To=CUSTOMER),
        _callback(
            sid,
            "completed",
            2,
            "02:00:40",
            "outbound-api",
            To=CUSTOMER,
            CallDuration="30",
            AnsweredBy="machine_end_beep",
        ),
    ]
    outcomes = _every_order(legs)
    assert len(outcomes) == 1
    totals = dict(outcomes.pop())
    assert totals.get(("agent-7", "machine_answers"), 0) == 1
    assert totals.get(("agent-7", "connects"), 0) == 0
    assert totals.get(("agent-7", "contacts"), 0) == 0
    # Without detection the same call is a human's: a connect and a contact.
    human = _every_order([{k: v for k, v in cb.items() if k != "AnsweredBy"} for cb in legs])
    assert len(human) == 1
    totals = dict(human.pop())
    assert (totals.get(("agent-7", "connects")), totals.get(("agent-7", "contacts"))) == (1, 1)


def test_a_connect_transfer_nobody_took_keeps_the_first_contacts_talk() -> None:
    first = {
        "ContactId": "c-10",
        "Channel": "VOICE",
        "InitiationMethod": "INBOUND",
        "InitiationTimestamp": "2026-11-02T01:00:00Z",
        "LastUpdateTimestamp": "2026-11-02T01:10:00Z",
        "Agent": {
            "Username": "kim",
            "ConnectedToAgentTimestamp": "2026-11-02T01:01:00Z",
            "AgentInteractionDuration": 239,
            "AfterContactWorkDuration": 5,
        },
        "Queue": {"Name": "Q1"},
        "Attributes": {"lead_id": "L-10"},
    }
    transfer = {
        **first,
        "ContactId": "c-11",
        "InitialContactId": "c-10",
        "PreviousContactId": "c-10",
        "InitiationMethod": "TRANSFER",
        "InitiationTimestamp": "2026-11-02T01:05:00Z",
        "Agent": None,
        "Queue": {"Name": "Q2"},
    }
    records = [[_stored(e) for e in connect.translate(r, CONTEXT)] for r in (first, transfer)]
    for order in (records, records[::-1]):
        totals = _kpis([e for record in order for e in record])
        assert totals[("kim", "talk_seconds")] == 239_000
        assert totals[("kim", "wrap_seconds")] == 5_000
        assert totals[("kim", "inbound_connects")] == 1
