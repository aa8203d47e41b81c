"""Amazon Connect contact records (CTRs) -> v1 call events.

One contact record per contact, delivered at least once and re-delivered with new data
(``LastUpdateTimestamp``) possibly days later. Every copy becomes one ``call.completed`` whose
``occurred_at`` is the contact's ``InitiationTimestamp`` (the same in every copy) and whose
event id ends with the copy's ``LastUpdateTimestamp`` in fixed-width UTC text. The
aggregator orders the facts of a call by ``(occurred_at, event_id)``; with ``occurred_at``
equal, the copy updated last has the greatest id, so its values win whatever order the
copies arrive in, and a repeated copy changes nothing.

- ``InitiationMethod`` ``INBOUND`` and ``WEBRTC_API`` (an in-app or web call to the
  centre) -> inbound; ``OUTBOUND``, ``API``, ``CALLBACK`` and any other -> outbound;
  ``MONITOR`` (a supervisor listening in) is no call. A transferred contact (``TRANSFER``,
  ``QUEUE_TRANSFER``) is the same customer call as its ``InitialContactId``: when an agent took
  it, its talk and agent go to that call (``call.answered`` and ``call.ended``, leaving the
  call's direction and start as the first contact set them); one no agent took changes
  nothing of the call but its code.
- Answered: outbound when the customer endpoint answered (``ConnectedToSystemTimestamp``;
  an agent's interaction alone does not say so, it runs from the dial even if the customer
  never answers), inbound when an agent took the call (``Agent`` present). An inbound
  contact that queued and never reached an agent is an abandoned call; an answered outbound
  one without an agent is a drop.
- ``AnsweringMachineDetectionStatus`` as Twilio's ``AnsweredBy``: ``VOICEMAIL_*`` -> machine,
  ``FAX_MACHINE_DETECTED`` -> not a contact, ``SIT_TONE_*`` and ``AMD_UNANSWERED`` -> not
  answered.
- Talk ``Agent.AgentInteractionDuration``, wrap ``Agent.AfterContactWorkDuration``.
- Who: ``Attributes`` ``agent_id``, ``team_id``, ``campaign_id``, ``lead_id`` when set; else
  ``Agent.Username`` (its part before ``@`` when it is an e-mail address) and
  ``Queue.Name`` as the campaign; the lead from a keyed hash of ``CustomerEndpoint.Address``.
- Contact: an agent took the call, not a machine or fax, and the code (when the table knows
  it) has the ``contact`` flag.
- ``Attributes.disposition``: the call's result code; one with the ``sale`` flag adds a
  ``sale.closed`` (``order_id`` ``connect:<ContactId>``, amount ``Attributes.amount`` or 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.ingest.adapters.common import (
    AdapterContext,
    RawEvent,
    TranslationError,
    amount,
    event_id,
    from_iso,
    native_id,
    required,
    rfc3339,
    scope_fields,
    seconds,
    stripped,
    without_domain,
)
from shared.dispositions import Flag

SYSTEM = "connect"
_INBOUND = frozenset({"INBOUND", "WEBRTC_API"})
_NOT_CALLS = frozenset({"MONITOR"})
_TRANSFER = frozenset({"TRANSFER", "QUEUE_TRANSFER"})
_MACHINE = frozenset({"VOICEMAIL_BEEP", "VOICEMAIL_NO_BEEP"})
_NOT_ANSWERED = frozenset(
    {"SIT_TONE_BUSY", "SIT_TONE_INVALID_NUMBER", "SIT_TONE_DETECTED", "AMD_UNANSWERED"}
)


def _mapping(record: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = record.get(field)
    if value is None:
        return {}
    if type(value) is dict:  # what JSON gives; skips the slower check against the ABC
        return value
    if not isinstance(value, Mapping):
        raise TranslationError(field, "must be an object")
    return value


def _version(updated: datetime) -> str:
    """``20220105T171259.000000Z``: fixed width, so that text order is time order
    (``strftime("%Y%m%dT%H%M%S.%fZ")``, at a third of its cost)."""
    u = updated.astimezone(UTC)
    return (
        f"{u.year:04d}{u.month:02d}{u.day:02d}T{u.hour:02d}{u.minute:02d}{u.second:02d}"
        f".{u.microsecond:06d}Z"
    )


def is_contact_record(record: Any) -> bool:
    return isinstance(record, Mapping) and "ContactId" in record


def translate(record: Mapping[str, Any], context: AdapterContext) -> list[RawEvent]:
    """The v1 events of one copy of a contact record."""
    if not isinstance(record, Mapping):
        raise TranslationError("(record)", "must be a JSON object")
    contact_id = required(record, "ContactId")
    channel = (stripped(record.get("Channel")) or "VOICE").upper()
    if channel != "VOICE":
        return []  # chats and tasks are not calls
    method = (stripped(record.get("InitiationMethod")) or "").upper()
    if method in _NOT_CALLS:
        return []
    started = from_iso(record.get("InitiationTimestamp"), "InitiationTimestamp")
    if started is None:
        raise TranslationError("InitiationTimestamp", "is required")
    updated = from_iso(record.get("LastUpdateTimestamp"), "LastUpdateTimestamp")
    version = _version(updated) if updated else "00000000T000000"
    agent = _mapping(record, "Agent")
    queue = _mapping(record, "Queue")
    attributes = _mapping(record, "Attributes")
    customer = _mapping(record, "CustomerEndpoint")

    username = without_domain(stripped(agent.get("Username")))
    lead_id = stripped(attributes.get("lead_id")) or context.lead_from_number(
        SYSTEM, stripped(customer.get("Address")), "CustomerEndpoint.Address"
    )
    campaign = stripped(attributes.get("campaign_id")) or stripped(queue.get("Name"))
    initial = stripped(record.get("InitialContactId"))
    transferred = method in _TRANSFER and initial is not None and initial != contact_id
    call_id = native_id(SYSTEM, initial if transferred and initial else contact_id)
    base: RawEvent = {
        "source": SYSTEM,
        "call_id": call_id,
        **scope_fields(
            agent_id=stripped(attributes.get("agent_id")) or username,
            team_id=stripped(attributes.get("team_id")),
            campaign_id=campaign,
            lead_id=lead_id,
        ),
    }
    has_agent = bool(agent) and (
        username is not None or agent.get("ConnectedToAgentTimestamp") is not None
    )
    amd = (stripped(record.get("AnsweringMachineDetectionStatus")) or "").upper()
    machine = amd in _MACHINE
    inbound = method in _INBOUND
    if inbound:
        answered = has_agent
    elif "ConnectedToSystemTimestamp" in record:
        answered = record["ConnectedToSystemTimestamp"] is not None and amd not in _NOT_ANSWERED
    else:  # a record without the field at all: an agent's contact is all there is to go by
        answered = has_agent and amd not in _NOT_ANSWERED
    talk = seconds(agent.get("AgentInteractionDuration"), "Agent.AgentInteractionDuration")
    wrap = seconds(agent.get("AfterContactWorkDuration"), "Agent.AfterContactWorkDuration")
    disposition = stripped(attributes.get("disposition"))
    # A known code says whether the decision-maker was reached; without one, an agent did.
    contact = (
        answered
        and has_agent
        and not machine
        and amd != "FAX_MACHINE_DETECTED"
        and (
            disposition is None
            or not context.dispositions.known(disposition, campaign)
            or Flag.contact in context.dispositions.flags(disposition, campaign)
        )
    )
    ident = event_id(SYSTEM, contact_id, "ctr", version)
    occurred_at = rfc3339(started)

    events: list[RawEvent]
    if transferred:
        events = []
        if has_agent:
            events.append(
                {
                    **base,
                    "event_id": ident + ":ended",
                    "type": "call.ended",
                    "occurred_at": occurred_at,
                    "talk_seconds": talk,
                    "wrap_seconds": wrap,
                }
            )
            events.append(
                {
                    **base,
                    "event_id": ident + ":answered",
                    "type": "call.answered",
                    "occurred_at": occurred_at,
                    "answered_by": "human",
                    "contact_reached": contact,
                }
            )
        if disposition:
            events.append(
                {
                    **base,
                    "event_id": ident + ":dispositioned",
                    "type": "call.dispositioned",
                    "occurred_at": occurred_at,
                    "disposition": disposition[:32],
                }
            )
    else:
        completed: RawEvent = {
            **base,
            "event_id": ident,
            "type": "call.completed",
            "occurred_at": occurred_at,
            "direction": "inbound" if inbound else "outbound",
            "answered": answered,
            "answered_by": "machine" if machine and answered else "human",
            "contact_reached": contact,
            "talk_seconds": talk,
            "wrap_seconds": wrap,
        }
        if disposition:
            completed["disposition"] = disposition[:32]
        events = [completed]
    if disposition and Flag.sale in context.dispositions.flags(disposition, campaign):
        if "agent_id" not in base or lead_id is None:
            raise TranslationError("Agent.Username", "a sale needs the agent and the lead")
        ended = from_iso(record.get("DisconnectTimestamp"), "DisconnectTimestamp") or started
        events.append(
            {
                **{k: v for k, v in base.items() if k != "call_id"},
                "event_id": event_id(SYSTEM, contact_id, "sale", version),
                "type": "sale.closed",
                "occurred_at": rfc3339(ended),
                "order_id": native_id(SYSTEM, f"connect:{contact_id}"),
                "amount": str(amount(attributes.get("amount"), "Attributes.amount")),
            }
        )
    return events
