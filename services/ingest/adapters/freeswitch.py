"""FreeSWITCH ``mod_json_cdr`` records -> v1 call events.

``mod_json_cdr`` posts one JSON document per leg when the leg hangs up, as the body or as
the form field ``cdr``, and by default with every value URL-encoded (``encode-values``). The
A-leg's ``uuid`` is the call; a B-leg (the other side of a ``bridge``) names its A-leg in
``originating_leg_uuid`` (or ``call_uuid``) and its events join that call.

- Each leg -> ``call.completed`` at its ``start_epoch``. An A-leg is answered when it was
  bridged (``bridge_epoch``, or a ``bleg_uuid``/``bridge_uuid`` with ``billsec`` > 0): its talk
  is the bridged time ``end_epoch`` - ``bridge_epoch`` (an A-leg's own ``billsec`` counts IVR
  time from its own answer). An A-leg never bridged is an unanswered attempt.
- A B-leg begins after its A-leg, so its answer (``answer_epoch``) and its ``billsec``, the
  customer leg's talk, win over the A-leg's. A B-leg that was not answered (a fork that lost
  the race, a leg rung in vain) says nothing the A-leg does not: it gives no event, so it
  cannot hide the leg that was answered.
- mod_callcenter rings agents on legs of their own (``cc_side`` ``agent``), not bridged from
  the caller's channel: such a leg joins the call of ``cc_member_session_uuid``, the caller's
  leg, as a B-leg, and its numbers are the agent's, never the lead's.
- The unanswered end's code from ``originate_disposition`` / ``hangup_cause``: ``USER_BUSY``
  -> ``B``; ``NO_ANSWER``, ``NO_USER_RESPONSE``, ``ORIGINATOR_CANCEL`` -> ``NA``;
  ``UNALLOCATED_NUMBER`` -> ``ADC``.
- Who: channel variables ``callboard_agent_id``, ``callboard_team_id``,
  ``callboard_campaign_id``, ``callboard_lead_id``, ``callboard_direction`` (set in the
  dialplan, exported to both legs); else ``cc_agent`` (mod_callcenter, ``1000@default`` read
  as ``1000``) for the agent; the lead else from a keyed hash of the customer's number
  (``destination_number`` outbound, ``caller_id_number`` inbound).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from services.ingest.adapters.common import (
    AdapterContext,
    RawEvent,
    TranslationError,
    event_id,
    from_epoch,
    native_id,
    rfc3339,
    scope_fields,
    seconds,
    without_domain,
)

SYSTEM = "freeswitch"
_END_CODES = {
    "USER_BUSY": "B",
    "NO_ANSWER": "NA",
    "NO_USER_RESPONSE": "NA",
    "ORIGINATOR_CANCEL": "NA",
    "UNALLOCATED_NUMBER": "ADC",
}


def variables(document: Mapping[str, Any]) -> dict[str, str]:
    """The leg's channel variables, URL-decoded (``encode-values`` is on by default).

    A decoded value is taken only when decoding changes it; a literal ``%`` that is not an
    escape stays as it was.
    """
    raw = document.get("variables")
    if not isinstance(raw, Mapping):
        raise TranslationError("variables", "is required (the leg's channel variables)")
    return {str(k): unquote(str(v)) if isinstance(v, str) else str(v) for k, v in raw.items()}


def _get(values: Mapping[str, str], name: str) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def translate(
    document: Mapping[str, Any], context: AdapterContext, uuid: str | None = None
) -> list[RawEvent]:
    """The v1 events of one leg's JSON CDR (``uuid``: the ``?uuid=`` of the request)."""
    if not isinstance(document, Mapping):
        raise TranslationError("(cdr)", "must be a JSON object")
    values = variables(document)
    leg = _get(values, "uuid") or (uuid.strip() if uuid else None)
    if leg is None:
        raise TranslationError("variables.uuid", "is required")
    agent_leg = (_get(values, "cc_side") or "").lower() == "agent"
    member = _get(values, "cc_member_session_uuid") if agent_leg else None
    a_leg = member or _get(values, "originating_leg_uuid") or _get(values, "call_uuid") or leg
    is_b_leg = a_leg != leg
    started = from_epoch(_get(values, "start_epoch"), "variables.start_epoch")
    if started is None:
        raise TranslationError("variables.start_epoch", "is required")
    answer = from_epoch(_get(values, "answer_epoch"), "variables.answer_epoch")
    bridge = from_epoch(_get(values, "bridge_epoch"), "variables.bridge_epoch")
    end = from_epoch(_get(values, "end_epoch"), "variables.end_epoch")
    billsec = seconds(_get(values, "billsec"), "variables.billsec")
    other = _get(values, "bleg_uuid") or _get(values, "bridge_uuid")

    if is_b_leg:
        answered = answer is not None and billsec > 0
        if not answered:
            return []
        talk = billsec
    elif bridge is not None and end is not None:
        answered = True
        talk = max(int((end - bridge).total_seconds()), 0)
    else:
        answered = other is not None and billsec > 0
        talk = billsec if answered else 0

    direction = (_get(values, "callboard_direction") or "outbound").lower()
    if direction not in ("inbound", "outbound"):
        raise TranslationError("variables.callboard_direction", "must be inbound or outbound")
    customer_field = "caller_id_number" if direction == "inbound" else "destination_number"
    lead_id = _get(values, "callboard_lead_id")
    if lead_id is None and not agent_leg:
        lead_id = context.lead_from_number(
            SYSTEM, _get(values, customer_field), f"variables.{customer_field}"
        )
    event: RawEvent = {
        "source": SYSTEM,
        "event_id": event_id(SYSTEM, leg, "cdr"),
        "type": "call.completed",
        "call_id": native_id(SYSTEM, a_leg),
        "occurred_at": rfc3339(started),
        "direction": direction,
        "answered": answered,
        "answered_by": "human",
        "contact_reached": answered,
        "talk_seconds": talk,
        **scope_fields(
            agent_id=_get(values, "callboard_agent_id") or without_domain(_get(values, "cc_agent")),
            team_id=_get(values, "callboard_team_id"),
            campaign_id=_get(values, "callboard_campaign_id"),
            lead_id=lead_id,
        ),
    }
    if not answered:
        cause = _get(values, "originate_disposition")
        if cause in (None, "SUCCESS", "ANSWER"):
            cause = _get(values, "hangup_cause")
        if cause in _END_CODES:
            event["disposition"] = _END_CODES[cause]
    return [event]
