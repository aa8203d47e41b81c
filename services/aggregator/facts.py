"""Merging events into entities, and what each entity contributes to the KPI tables.

An entity is what several events describe together: a call (all ``call.*`` events and its
survey), an order (its sale, cancellation and payments), a quote, a stage change. Its state
merges commutatively and idempotently: every field is a last-writer-wins register ordered by
``(occurred_at, event_id, value)``, the call's start is the minimum ``occurred_at``, a
cancellation is a flag that once set stays set. So the final state, and with it every KPI,
depends only on the set of events, never on their order or on repeats.

The aggregator applies an event by taking the entity's contribution before and after the
merge and adding the difference to the tables. A call's contribution also reads the flags of
its latest disposition code (``shared.dispositions``): they are looked up when the
contribution is taken, so a changed dispositions file restates history only through
``callboard rebuild``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from shared.dispositions import DEFAULT_TABLE, DispositionTable, Flag
from shared.events import EventType
from shared.kpis import to_stored

if TYPE_CHECKING:
    from services.aggregator.decoded import DecodedEvent

State = dict[str, Any]
Scope = tuple[str, str, str]
# A register: value, then the ordering key (UTC timestamp text, event id).
Register = list[Any]

INTENT_STAGES = frozenset({"intent", "ready"})


def scope_dict(scope: Scope) -> dict[str, str]:
    """A scope as the columns of a row."""
    return {"agent_id": scope[0], "team_id": scope[1], "campaign_id": scope[2]}


def utc_text(value: datetime) -> str:
    """A UTC timestamp in fixed-width text, so that its text order is its time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc_text(value: str) -> datetime:
    return datetime.fromisoformat(value)


def entity_key(event: dict[str, Any]) -> str | None:
    """The entity an event belongs to; ``None`` for events that are not merged.

    Raises when the event lacks the field that names its entity.
    """
    kind: str = event["type"]
    if kind.startswith("call.") or kind == EventType.survey_completed:
        return f"call:{event['call_id']}"
    if kind in (EventType.sale_closed, EventType.sale_cancelled, EventType.payment_received):
        return f"order:{event['order_id']}"
    if kind == EventType.quote_given:
        return f"quote:{event['event_id']}"
    if kind == EventType.lead_stage_changed:
        return f"stage:{event['event_id']}"
    return None


def _set(registers: dict[str, Register], name: str, value: Any, ts: str, event_id: str) -> None:
    if value is None:
        return
    old = registers.get(name)
    if old is None:
        registers[name] = [value, ts, event_id]
        return
    # The order (ts, event_id, repr(value)); the values' text only for a tie, which is rare.
    order, known = (ts, event_id), (old[1], old[2])
    if order > known or (order == known and repr(value) > repr(old[0])):
        registers[name] = [value, ts, event_id]


def _value(registers: dict[str, Register], name: str, default: Any = None) -> Any:
    register = registers.get(name)
    return default if register is None else register[0]


# The fields each call event sets on its call.
CALL_FIELDS: dict[str, tuple[str, ...]] = {
    EventType.call_started: ("direction",),
    EventType.call_answered: ("contact_reached", "answered_by"),
    EventType.call_ended: ("talk_seconds", "wrap_seconds", "resolved"),
    EventType.call_dispositioned: ("disposition",),
    EventType.call_completed: (
        "direction",
        "answered",
        "contact_reached",
        "answered_by",
        "talk_seconds",
        "wrap_seconds",
        "resolved",
        "disposition",
    ),
}
_SCOPE_FIELDS = ("agent_id", "team_id", "campaign_id", "lead_id")
_SALE_FIELDS = ("amount", "margin", "customer_type", *_SCOPE_FIELDS)


def merge(state: State | None, event: DecodedEvent, *, in_place: bool = False) -> State:
    """The entity's state with ``event`` merged in.

    ``state`` is left as it was unless ``in_place`` (the caller owns a private copy).
    """
    kind = event.type
    ts = event.ts
    event_id = event.event_id
    if state is None:
        new: State = {"r": {}}
    else:
        new = state if in_place else _copy(state)
    registers: dict[str, Register] = new["r"]
    if kind in CALL_FIELDS:
        new["call"] = True
        new["start"] = min(new.get("start") or ts, ts)
        for name in _SCOPE_FIELDS:
            _set(registers, name, getattr(event, name), ts, event_id)
        for name in CALL_FIELDS[kind]:
            _set(registers, name, getattr(event, name), ts, event_id)
        if kind == EventType.call_answered:
            _set(registers, "answered", True, ts, event_id)
        elif kind in (EventType.call_ended, EventType.call_completed):
            _set(registers, "ended", True, ts, event_id)
    elif kind == EventType.survey_completed:
        new["start"] = min(new.get("start") or ts, ts)
        survey = [event.score, event.agent_id or "", event.team_id or "", event.campaign_id or ""]
        _set(registers, "survey", [*survey, ts], ts, event_id)
    elif kind == EventType.sale_closed:
        _set(registers, "sale", [getattr(event, n) for n in _SALE_FIELDS] + [ts], ts, event_id)
    elif kind == EventType.sale_cancelled:
        new["cancelled"] = True
    elif kind == EventType.payment_received:
        scope = [event.agent_id or "", event.team_id or "", event.campaign_id or ""]
        payments = new.setdefault("payments", {})
        payments[event_id] = _greater(payments.get(event_id), [event.amount, ts, *scope])
    else:
        # Quotes and stage changes are one event each: the state is the event.
        new["event"] = _greater(new.get("event"), (event.fields or {}) | {"ts": ts})
    return new


def _greater(old: Any, new: Any) -> Any:
    """Of two copies of one event (same ``event_id``), the one kept whatever their order."""
    if old is None or _order(new) > _order(old):
        return new
    return old


def _order(value: Any) -> str:
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def _copy(state: State) -> State:
    new = dict(state)
    new["r"] = dict(state.get("r", {}))
    if "payments" in state:
        new["payments"] = dict(state["payments"])
    return new


@dataclass(frozen=True, slots=True)
class LeadFact:
    lead_id: str
    ts: str
    scope: Scope
    flag: bool = False


@dataclass(slots=True)
class Contribution:
    """What one entity adds to the tables."""

    counters: dict[tuple[str, Scope], dict[str, int]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    dispositions: dict[tuple[str, Scope, str], int] = field(default_factory=dict)
    lead_facts: dict[str, LeadFact] = field(default_factory=dict)

    def add(self, ts: str, scope: Scope, key: str, value: int | Decimal) -> None:
        stored = to_stored(key, value)
        if stored:
            row = self.counters[(ts, scope)]
            row[key] = row.get(key, 0) + stored


def _scope(registers: dict[str, Register]) -> Scope:
    return (
        _value(registers, "agent_id", ""),
        _value(registers, "team_id", ""),
        _value(registers, "campaign_id", ""),
    )


def contribution(
    state: State | None,
    effective_call_seconds: int,
    dispositions: DispositionTable = DEFAULT_TABLE,
) -> Contribution:
    """Everything the entity in ``state`` counts for, at its attribution time and scope."""
    out = Contribution()
    if state is None:
        return out
    registers: dict[str, Register] = state.get("r", {})
    if state.get("call"):
        _call_contribution(state, registers, effective_call_seconds, dispositions, out)
    elif "survey" in registers:
        score, agent, team, campaign, ts = _value(registers, "survey")
        out.add(ts, (agent, team, campaign), "csat_responses", 1)
        out.add(ts, (agent, team, campaign), "csat_sum", score)
    if "sale" in registers or "payments" in state:
        _order_contribution(state, registers, out)
    event = state.get("event")
    if event is not None:
        scope = (
            event.get("agent_id") or "",
            event.get("team_id") or "",
            event.get("campaign_id") or "",
        )
        if event["type"] == EventType.quote_given:
            out.add(event["ts"], scope, "quotes", 1)
            out.lead_facts["quoted"] = LeadFact(event["lead_id"], event["ts"], scope)
        elif event["type"] == EventType.lead_stage_changed and event["stage"] in INTENT_STAGES:
            out.lead_facts["intent"] = LeadFact(event["lead_id"], event["ts"], scope)
    return out


def _call_contribution(
    state: State,
    registers: dict[str, Register],
    effective_call_seconds: int,
    dispositions: DispositionTable,
    out: Contribution,
) -> None:
    ts: str = state["start"]
    scope = _scope(registers)
    inbound = _value(registers, "direction", "outbound") == "inbound"
    disposition = _value(registers, "disposition")
    flags = (
        dispositions.flags(disposition, scope[2] or None)
        if disposition is not None
        else frozenset()
    )
    answered = bool(_value(registers, "answered", False))
    # The code is the dialer's or agent's last word on the call: a machine code makes it a
    # machine answer, a code a human answered overrides a machine guess.
    machine = Flag.answering_machine in flags or (
        answered
        and _value(registers, "answered_by", "human") == "machine"
        and Flag.human_answered not in flags
    )
    # The customer answered and no agent took the call: a drop, and a connect.
    drop = not machine and (Flag.drop in flags or (answered and not scope[0]))
    connected = not machine and (answered or drop)
    contact = connected and not drop and bool(_value(registers, "contact_reached", True))
    ended = bool(_value(registers, "ended", False)) or disposition is not None
    abandoned = inbound and ended and not (connected and not drop)
    talk = Decimal(_value(registers, "talk_seconds", 0))
    wrap = Decimal(_value(registers, "wrap_seconds", 0) or 0)
    effective = connected and talk >= effective_call_seconds

    out.add(ts, scope, "inbound_calls" if inbound else "dials", 1)
    out.add(ts, scope, "connects", int(connected))
    out.add(ts, scope, "inbound_connects", int(connected and inbound))
    out.add(ts, scope, "contacts", int(contact))
    out.add(ts, scope, "effective_calls", int(effective))
    out.add(ts, scope, "talk_seconds", talk)
    out.add(ts, scope, "effective_talk_seconds", talk if effective else 0)
    out.add(ts, scope, "wrap_seconds", wrap)
    out.add(ts, scope, "drops", int(drop))
    out.add(ts, scope, "abandoned", int(abandoned))
    out.add(ts, scope, "machine_answers", int(machine))
    out.add(ts, scope, "dnc_marks", int(Flag.dnc in flags))
    out.add(ts, scope, "callbacks_scheduled", int(Flag.callback in flags))
    out.add(ts, scope, "not_interested", int(Flag.not_interested in flags))
    if "survey" in registers:
        score = _value(registers, "survey")[0]
        out.add(ts, scope, "csat_responses", 1)
        out.add(ts, scope, "csat_sum", score)
    if disposition is not None:
        out.dispositions[(ts, scope, disposition)] = 1
    lead_id = _value(registers, "lead_id")
    if lead_id is not None:
        if not inbound:
            out.lead_facts["dialed"] = LeadFact(lead_id, ts, scope)
        if contact:
            out.lead_facts["reached"] = LeadFact(lead_id, ts, scope)
        if inbound:
            # Every inbound call, answered or not: first-call resolution asks whether the
            # lead's first inbound call was the one that resolved it.
            resolved = bool(_value(registers, "resolved", False))
            out.lead_facts["inbound"] = LeadFact(lead_id, ts, scope, resolved)


def _order_contribution(state: State, registers: dict[str, Register], out: Contribution) -> None:
    if state.get("cancelled"):
        return
    sale = _value(registers, "sale")
    if sale is not None:
        amount, margin, customer_type, agent, team, campaign, lead_id, ts = sale
        scope = (agent or "", team or "", campaign or "")
        out.add(ts, scope, "sales", 1)
        out.add(ts, scope, "revenue", Decimal(amount))
        if margin is not None:
            out.add(ts, scope, "margin", Decimal(margin))
        key = "existing_customer_sales" if customer_type == "existing" else "new_customer_sales"
        out.add(ts, scope, key, 1)
        out.lead_facts["won"] = LeadFact(lead_id, ts, scope)
    for amount, ts, agent, team, campaign in state.get("payments", {}).values():
        out.add(ts, (agent, team, campaign), "collections", Decimal(amount))
