"""KPIs depend only on the set of events: not on their order, batching or repeats."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.batch import BatchBuilder
from services.aggregator.decoded import decode
from shared.dispositions import DEFAULT_TABLE, DispositionCode, Flag

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def _ts(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


@st.composite
def call_events(draw: st.DrawFn, call: int) -> list[dict[str, Any]]:
    # No agent: a call the dialer connected that no agent took (a drop when answered).
    base = {"call_id": f"c{call}", "agent_id": draw(st.sampled_from(["a1", "a2", None]))}
    start = draw(st.integers(0, 120))
    events: list[dict[str, Any]] = []
    kinds = draw(
        st.sets(
            st.sampled_from(
                [
                    "call.started",
                    "call.answered",
                    "call.ended",
                    "call.dispositioned",
                    "call.completed",
                ]
            ),
            min_size=1,
        )
    )
    for n, kind in enumerate(sorted(kinds)):
        event: dict[str, Any] = {
            "event_id": f"c{call}-{n}",
            "type": kind,
            "occurred_at": _ts(start + draw(st.integers(0, 5))),
            **base,
            "lead_id": f"L{draw(st.integers(0, 3))}",
        }
        campaign = draw(st.sampled_from([None, "renewals", "spring"]))
        if campaign is not None:
            event["campaign_id"] = campaign
        if kind in ("call.started", "call.completed"):
            event["direction"] = draw(st.sampled_from(["outbound", "inbound"]))
        if kind in ("call.answered", "call.completed"):
            event["contact_reached"] = draw(st.booleans())
            event["answered_by"] = draw(st.sampled_from(["human", "machine"]))
        if kind == "call.completed":
            event["answered"] = draw(st.booleans())
        if kind in ("call.ended", "call.completed"):
            event["talk_seconds"] = str(draw(st.integers(0, 200)))
            event["wrap_seconds"] = str(draw(st.integers(0, 30)))
        if kind in ("call.dispositioned", "call.completed"):
            event["disposition"] = draw(st.sampled_from(CODES))
        events.append({k: v for k, v in event.items() if v is not None})
    if draw(st.booleans()):
        events.append(
            {
                "event_id": f"c{call}-survey",
                "type": "survey.completed",
                "occurred_at": _ts(start + 10),
                **base,
                "agent_id": base["agent_id"] or "a1",
                "score": draw(st.integers(1, 5)),
            }
        )
    return events


@st.composite
def order_events(draw: st.DrawFn, order: int) -> list[dict[str, Any]]:
    at = draw(st.integers(0, 120))
    base = {"agent_id": "a1", "order_id": f"o{order}"}
    events = [
        {
            "event_id": f"o{order}-sale",
            "type": "sale.closed",
            "occurred_at": _ts(at),
            **base,
            "lead_id": f"L{order % 3}",
            "amount": str(draw(st.integers(0, 10_000))),
            "margin": "12.5",
        }
    ]
    if draw(st.booleans()):
        events.append(
            {
                "event_id": f"o{order}-cancel",
                "type": "sale.cancelled",
                "occurred_at": _ts(at + 1),
                **base,
            }
        )
    payment = {
        "event_id": f"o{order}-pay",
        "type": "payment.received",
        "occurred_at": _ts(at + 2),
        **base,
        "amount": "100.00",
    }
    if draw(st.booleans()):
        events.append(payment)
    quote = {
        "event_id": f"o{order}-quote",
        "type": "quote.given",
        "occurred_at": _ts(at - 1),
        "agent_id": "a1",
        "lead_id": f"L{order % 3}",
        "amount": "80.00",
    }
    events.append(quote)
    # A dialer re-sending an event with other content under the same event_id: which copy
    # counts must not depend on which arrived first.
    if draw(st.booleans()):
        events.append({**quote, "amount": "95.00", "agent_id": "a2"})
    if draw(st.booleans()):
        events.append({**payment, "amount": "250.00"})
    return events


@st.composite
def floors(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for call in range(draw(st.integers(1, 4))):
        events += draw(call_events(call))
    for order in range(draw(st.integers(0, 2))):
        events += draw(order_events(order))
    return events


# Codes of every kind of flag, one the table does not know, and one whose flags the campaign
# "renewals" overrides: a call moving between campaigns changes its flags.
CODES = ["NI", "SALE", "CALLBK", "DROP", "AA", "A", "DNC", "XDROP", "NA", "NOPE"]
TABLE = DEFAULT_TABLE.with_rows(
    [
        DispositionCode(
            "NI", "renewals", "Not now", frozenset({Flag.human_answered, Flag.callback})
        ),
        DispositionCode("NA", "renewals", "No answer", frozenset({Flag.answering_machine})),
    ]
)


def totals(events: list[dict[str, Any]], cuts: list[int]) -> dict[str, Any]:
    """Apply ``events`` in batches cut at ``cuts``, carrying state like the database does."""
    builder = BatchBuilder(UTC, effective_call_seconds=60, dispositions=TABLE)
    stored: dict[str, Any] = {}
    minute: dict[Any, int] = defaultdict(int)
    day: dict[Any, int] = defaultdict(int)
    dispositions: dict[Any, int] = defaultdict(int)
    facts: dict[Any, Any] = {}
    bounds = [0, *sorted(cuts), len(events)]
    for lo, hi in pairwise(bounds):
        delta = builder.build([decode(e) for e in events[lo:hi]], stored)
        stored.update(delta.states)
        for (bucket, scope), values in delta.minute_counters.items():
            for name, value in values.items():
                minute[(bucket, scope, name)] += value
        for (day_of, scope), values in delta.day_counters.items():
            for name, value in values.items():
                day[(day_of, scope, name)] += value
        for key, calls in delta.minute_dispositions.items():
            dispositions[key] += calls
        for row in delta.lead_facts:
            facts[(row.source, row.fact)] = row.value
    return {
        "minute": {k: v for k, v in minute.items() if v},
        "day": {k: v for k, v in day.items() if v},
        "dispositions": {k: v for k, v in dispositions.items() if v},
        "facts": {k: v for k, v in facts.items() if v is not None},
    }


@settings(max_examples=300, deadline=None)
@given(data=st.data(), events=floors())
def test_order_batches_and_duplicates_do_not_change_the_numbers(
    data: st.DataObject, events: list[dict[str, Any]]
) -> None:
    reference = totals(events, [])
    shuffled = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events)))))
    cuts = data.draw(st.lists(st.integers(0, len(shuffled)), max_size=4))
    assert totals(shuffled, cuts) == reference


def test_a_later_disposition_replaces_the_earlier_one() -> None:
    first = {
        "event_id": "d1",
        "type": "call.dispositioned",
        "occurred_at": _ts(1),
        "call_id": "c",
        "disposition": "CALLBK",
    }
    later = {**first, "event_id": "d2", "occurred_at": _ts(3), "disposition": "SALE"}
    both_orders = [
        totals([first, later], []),
        totals([later], []) | {},
        totals([later, first], [1]),
    ]
    codes = [{k[2]: v for k, v in t["dispositions"].items()} for t in both_orders]
    assert codes == [{"SALE": 1}, {"SALE": 1}, {"SALE": 1}]


def test_a_cancelled_sale_counts_nowhere_whichever_arrives_first() -> None:
    sale = {
        "event_id": "s",
        "type": "sale.closed",
        "occurred_at": _ts(0),
        "agent_id": "a",
        "lead_id": "L",
        "order_id": "o",
        "amount": "10",
    }
    cancel = {
        "event_id": "x",
        "type": "sale.cancelled",
        "occurred_at": _ts(5),
        "agent_id": "a",
        "order_id": "o",
    }
    for events in ([sale, cancel], [cancel, sale]):
        assert totals(events, [1]) == {"minute": {}, "day": {}, "dispositions": {}, "facts": {}}


FLAG_COUNTERS = (
    "dials",
    "inbound_calls",
    "connects",
    "contacts",
    "talk_seconds",
    "drops",
    "abandoned",
    "machine_answers",
    "dnc_marks",
    "callbacks_scheduled",
    "not_interested",
)


def _counts(events: list[dict[str, Any]]) -> dict[str, int]:
    """The day totals of the counters the flags touch, summed over every scope."""
    out = dict.fromkeys(FLAG_COUNTERS, 0)
    for (_, _, name), value in totals(events, [1]).get("day", {}).items():
        if name in out:
            out[name] += value
    return out


def _completed(call: str, **fields: Any) -> dict[str, Any]:
    event = {
        "event_id": f"{call}-done",
        "type": "call.completed",
        "occurred_at": _ts(0),
        "call_id": call,
        "answered": True,
        **fields,
    }
    return {k: v for k, v in event.items() if v is not None}


def _dispo(call: str, code: str, minute: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{call}-{code}-{minute}",
        "type": "call.dispositioned",
        "occurred_at": _ts(minute),
        "call_id": call,
        "disposition": code,
        **fields,
    }


def test_the_flags_of_the_latest_code_count_each_call_once() -> None:
    zero = dict.fromkeys(FLAG_COUNTERS, 0)
    # A drop code on an answered call no agent took: a drop and a connect, never a contact.
    dropped = _counts([_completed("c", disposition="DROP")])
    assert dropped == zero | {"dials": 1, "connects": 1, "drops": 1}
    # Answered with no agent and no code at all: a drop as well.
    assert _counts([_completed("c")]) == dropped
    # An agent, a human by the event, a machine by the agent's code: the code wins, and the
    # machine's talk still counts.
    machine = _completed("c", agent_id="a1", talk_seconds="12", disposition="A")
    assert _counts([machine]) == zero | {"dials": 1, "talk_seconds": 12_000, "machine_answers": 1}
    # A machine by the dialer's guess, a human by the code (not interested): a contact.
    guessed = _completed("c", agent_id="a1", answered_by="machine", disposition="NI")
    assert _counts([guessed]) == zero | {
        "dials": 1,
        "connects": 1,
        "contacts": 1,
        "not_interested": 1,
    }


def test_abandoned_is_an_inbound_call_ended_before_an_agent_answered() -> None:
    zero = dict.fromkeys(FLAG_COUNTERS, 0)
    started = {
        "event_id": "s",
        "type": "call.started",
        "occurred_at": _ts(0),
        "call_id": "c",
        "direction": "inbound",
    }
    ended = {
        "event_id": "e",
        "type": "call.ended",
        "occurred_at": _ts(2),
        "call_id": "c",
        "talk_seconds": "0",
    }
    answered = {
        "event_id": "a",
        "type": "call.answered",
        "occurred_at": _ts(1),
        "call_id": "c",
        "agent_id": "a1",
    }
    # Still ringing: offered, not abandoned yet.
    assert _counts([started]) == zero | {"inbound_calls": 1}
    assert _counts([ended, started]) == zero | {"inbound_calls": 1, "abandoned": 1}
    assert _counts([ended, answered, started]) == zero | {
        "inbound_calls": 1,
        "connects": 1,
        "contacts": 1,
    }
    # An inbound queue timeout code: the caller was dropped, and abandoned.
    assert _counts([started, _dispo("c", "TIMEOT", 3)]) == zero | {
        "inbound_calls": 1,
        "connects": 1,
        "drops": 1,
        "abandoned": 1,
    }


def test_a_campaign_override_and_a_correction_change_the_flags() -> None:
    zero = dict.fromkeys(FLAG_COUNTERS, 0)
    call = _completed("c", agent_id="a1", contact_reached=False, campaign_id="renewals")
    # NI is "not now, call back" in the renewals campaign, not interested elsewhere.
    assert _counts([call, _dispo("c", "NI", 1)]) == zero | {
        "dials": 1,
        "connects": 1,
        "callbacks_scheduled": 1,
    }
    elsewhere = {**call, "campaign_id": "spring"}
    assert _counts([elsewhere, _dispo("c", "NI", 1)]) == zero | {
        "dials": 1,
        "connects": 1,
        "not_interested": 1,
    }
    # DNC corrected to a callback a minute later, in either order: only the callback counts.
    events = [elsewhere, _dispo("c", "DNC", 1), _dispo("c", "CALLBK", 2)]
    expected = zero | {"dials": 1, "connects": 1, "callbacks_scheduled": 1}
    assert _counts(events) == expected
    assert _counts(events[::-1]) == expected
    # A code the table does not know: counted by code, no flags.
    assert _counts([elsewhere, _dispo("c", "ZZZ", 1)]) == zero | {"dials": 1, "connects": 1}
