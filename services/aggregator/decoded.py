"""The events the aggregator merges, each decoded once from its Kafka record into a typed value.

A record is read once: its JSON object becomes a :class:`DecodedEvent` whose attributes the
merge, the roster and the funnel read, with its entity key and its UTC time worked out once.
The values are those ingest wrote, as they are: the merge stores them in the entities'
states, and a state must read the same whatever version of the aggregator wrote it.

Building the value reads exactly the fields the merge needs, in the order the merge reads
them, so that a record the merge cannot take fails here with the error the merge would
raise: the reason it is set aside with does not depend on where it was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from services.aggregator.facts import CALL_FIELDS, entity_key, utc_text
from shared.events import EventType

# The event types whose entity is merged field by field; any other entity is one event,
# stored whole (``DecodedEvent.fields``).
_FIELD_MERGED = frozenset(CALL_FIELDS) | {
    EventType.survey_completed,
    EventType.sale_closed,
    EventType.sale_cancelled,
    EventType.payment_received,
}
# Looked up once: an enum member costs a lookup each time it is named.
_AGENT_STATE_CHANGED = str(EventType.agent_state_changed)
_LEAD_STAGE_CHANGED = str(EventType.lead_stage_changed)
_SURVEY_COMPLETED = str(EventType.survey_completed)
_PAYMENT_RECEIVED = str(EventType.payment_received)
# The optional fields the merge and the roster read, by event type.
_READ: dict[str, tuple[str, ...]] = CALL_FIELDS | {
    EventType.sale_closed: ("amount", "margin", "customer_type"),
    EventType.agent_state_changed: ("reason",),
}


# The slots are set once, in ``decode``; not frozen, because a frozen dataclass pays for each
# of its many fields on every event, and the aggregator's CPU per event is its throughput.
@dataclass(slots=True)
class DecodedEvent:
    """One event as the aggregator merges it; ``None`` where the record has no such field."""

    type: str
    event_id: str
    # The entity the event belongs to; ``None`` for events that are not merged.
    key: str | None
    # ``occurred_at`` as fixed-width UTC text; empty when nothing reads it.
    ts: str
    # ``occurred_at`` as a UTC datetime, for agent state and stage changes.
    occurred_at: datetime | None
    agent_id: Any
    team_id: Any
    campaign_id: Any
    lead_id: Any
    state: Any = None
    stage: Any = None
    # The fields below are read only for the event types that have them (``_READ``).
    direction: Any = None
    answered: Any = None
    contact_reached: Any = None
    answered_by: Any = None
    talk_seconds: Any = None
    wrap_seconds: Any = None
    resolved: Any = None
    disposition: Any = None
    score: Any = None
    amount: Any = None
    margin: Any = None
    customer_type: Any = None
    reason: Any = None
    # An event that is its entity's whole state (a quote, a stage change): its fields but
    # ``occurred_at``, as the state stores them.
    fields: dict[str, Any] | None = None


def decode(raw: dict[str, Any]) -> DecodedEvent:
    """The typed event of ``raw``; raises what :func:`entity_key` raises, then what the merge
    would raise on it."""
    return decode_with_key(raw, entity_key(raw))


def decode_with_key(raw: dict[str, Any], key: str | None) -> DecodedEvent:
    """The typed event of ``raw``, whose entity is ``key``; raises what the merge would."""
    kind = raw["type"]
    event_id = raw["event_id"]
    get = raw.get
    agent_id = get("agent_id")
    team_id = get("team_id")
    lead_id = get("lead_id")
    ts = ""
    occurred_at = state = stage = None
    # The roster reads the time of every event with an agent and a team.
    if agent_id and team_id:
        ts = event_time(raw)
    if kind == _AGENT_STATE_CHANGED:
        if agent_id:
            state = raw["state"]
            occurred_at = _utc_datetime(raw["occurred_at"])
    elif kind == _LEAD_STAGE_CHANGED:
        lead_id = raw["lead_id"]
        stage = raw["stage"]
        occurred_at = _utc_datetime(raw["occurred_at"])
    if key is not None and not ts:
        ts = event_time(raw)
    event = DecodedEvent(
        kind,
        event_id,
        key,
        ts,
        occurred_at,
        agent_id,
        team_id,
        get("campaign_id"),
        lead_id,
        state,
        stage,
    )
    if key is not None and kind not in _FIELD_MERGED:
        event.fields = {k: v for k, v in raw.items() if k != "occurred_at"}
    elif kind == _SURVEY_COMPLETED:
        event.score = raw["score"]
    elif kind == _PAYMENT_RECEIVED:
        event.amount = raw["amount"]
    else:
        for name in _READ.get(kind, ()):
            setattr(event, name, get(name))
    return event


def event_time(event: dict[str, Any]) -> str:
    return _utc_text_of(event["occurred_at"])


# Copies of one time are common (a call's events, a batch's repeats): parsed once.
@lru_cache(maxsize=16384)
def _utc_text_of(occurred_at: str) -> str:
    return utc_text(datetime.fromisoformat(occurred_at))


def _utc_datetime(occurred_at: str) -> datetime:
    return datetime.fromisoformat(occurred_at).astimezone(UTC)
