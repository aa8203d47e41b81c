"""Twilio Programmable Voice status callbacks -> v1 call events.

One callback per call-progress event (``initiated``, ``ringing``, ``answered``,
``completed``), or only the terminal one when the call subscribes to ``completed`` alone
(Twilio's default). Callbacks arrive in any order and may repeat: each becomes events with
ids from ``CallSid``, ``CallStatus`` and ``SequenceNumber``, and the aggregator's merge does
the rest.

- ``initiated`` / ``queued`` / ``ringing`` -> ``call.started``; ``in-progress`` ->
  ``call.answered``; a terminal status -> ``call.completed`` with everything it carries.
- ``CallDuration`` is the talk in seconds; ``Duration`` is billed *minutes* and is ignored.
  A terminal callback's ``occurred_at`` is ``Timestamp`` - ``CallDuration`` (when the talk
  began), so the call starts there unless an earlier callback says otherwise.
- ``AnsweredBy`` (answering machine detection): ``human`` or ``unknown`` -> a human;
  ``machine_*`` -> a machine, not a contact; ``fax`` -> not a contact. A callback without it
  says nothing of who answered (Twilio sends the detection's result to the call's ``Url`` and
  the ``completed`` callback, not always to ``answered``), so it cannot undo what another
  callback of the call said; a call no callback says it of was answered by a human.
- A child leg (``ParentCallSid``: a ``<Dial>`` from the parent) is the same customer call as
  its parent: its events carry the parent's call id. It begins after its parent answered,
  so its answer, talk and end win over the parent's (the parent's ``CallDuration`` includes
  the time before the dial). Its ``Direction`` is always ``outbound-dial``, whichever way
  the customer call went, so its events say nothing of the direction: the parent's
  ``Direction`` alone decides it, in whatever order their callbacks arrive.
- ``Direction`` ``inbound`` -> inbound, unless ``From`` is a ``client:`` (an agent's Twilio
  Client app calling out, its ``<Dial>`` the customer); anything else -> outbound.
- Who: the ``agent_id``, ``team_id``, ``campaign_id`` and ``lead_id`` query parameters of the
  ``StatusCallback`` URL; without ``lead_id``, a keyed hash of the customer's number (``To``
  on outbound calls and child legs, ``From`` on inbound ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from services.ingest.adapters.common import (
    AdapterContext,
    RawEvent,
    TranslationError,
    event_id,
    native_id,
    required,
    rfc3339,
    scope_fields,
    seconds,
    shifted,
    text,
)

SYSTEM = "twilio"
STARTED = frozenset({"queued", "initiated", "ringing"})
TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# The unanswered ends as result codes of the default table (busy, no answer) or their own.
_END_CODES = {"busy": "B", "no-answer": "NA", "failed": "FAILED", "canceled": "CANCEL"}


def _timestamp(value: str | None) -> datetime:
    if value is None or not value.strip():
        raise TranslationError("Timestamp", "is required")
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError) as exc:
        raise TranslationError("Timestamp", "must be an RFC 2822 date") from exc
    if parsed.tzinfo is None:
        raise TranslationError("Timestamp", "must carry a UTC offset")
    return parsed


def _answered_by(value: str | None) -> RawEvent:
    """``answered_by`` and ``contact_reached`` from ``AnsweredBy``; nothing without it."""
    kind = (value or "").strip().lower()
    if not kind:
        return {}
    if kind.startswith("machine"):
        return {"answered_by": "machine", "contact_reached": False}
    if kind == "fax":
        return {"answered_by": "human", "contact_reached": False}
    return {"answered_by": "human", "contact_reached": True}


def _is_client(number: str | None) -> bool:
    return number is not None and number.lower().startswith("client:")


def translate(params: Mapping[str, str], context: AdapterContext) -> list[RawEvent]:
    """The v1 events of one status callback (its form or query parameters, merged)."""
    sid = required(params, "CallSid")
    status = required(params, "CallStatus").lower()
    parent = text(params, "ParentCallSid")
    sequence = text(params, "SequenceNumber") or "-"
    occurred = _timestamp(params.get("Timestamp"))
    caller = text(params, "From")
    inbound = (
        parent is None
        and (text(params, "Direction") or "").lower() == "inbound"
        and not _is_client(caller)
    )
    customer_field = "From" if inbound else "To"
    customer = caller if inbound else text(params, "To")
    if _is_client(customer):
        customer = None  # a Twilio Client (an agent's app), not the customer
    lead_id = text(params, "lead_id") or context.lead_from_number(SYSTEM, customer, customer_field)
    base: RawEvent = {
        "source": SYSTEM,
        "call_id": native_id(SYSTEM, parent or sid),
        **scope_fields(
            agent_id=text(params, "agent_id"),
            team_id=text(params, "team_id"),
            campaign_id=text(params, "campaign_id"),
            lead_id=lead_id,
        ),
    }
    # A child leg leaves the direction to its parent (see the module's first lines).
    direction = {} if parent else {"direction": "inbound" if inbound else "outbound"}
    ident = event_id(SYSTEM, sid, status, sequence)
    if status in STARTED:
        return [
            {
                **base,
                "event_id": ident,
                "type": "call.started",
                "occurred_at": rfc3339(occurred),
                **direction,
            }
        ]
    who_answered = _answered_by(text(params, "AnsweredBy"))
    if status == "in-progress":
        return [
            {
                **base,
                "event_id": ident,
                "type": "call.answered",
                "occurred_at": rfc3339(occurred),
                **who_answered,
            }
        ]
    if status not in TERMINAL:
        raise TranslationError(
            "CallStatus",
            "must be one of queued, initiated, ringing, in-progress, completed, busy, "
            "no-answer, failed, canceled",
        )
    talk = seconds(params.get("CallDuration"), "CallDuration")
    answered = status == "completed" and talk > 0
    event: RawEvent = {
        **base,
        "event_id": ident,
        "type": "call.completed",
        "occurred_at": rfc3339(shifted(occurred, talk)),
        **direction,
        "answered": answered,
        "talk_seconds": talk if answered else 0,
    }
    if answered:
        event.update(who_answered)
    else:
        event["contact_reached"] = False
        if status in _END_CODES:
            event["disposition"] = _END_CODES[status]
    return [event]
