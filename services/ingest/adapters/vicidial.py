"""VICIdial's Start, Dispo and No Agent Call URLs -> v1 call events.

VICIdial calls a URL template with ``--A--var--B--`` substitutions (``docs/adapters.md``
has the template to paste). Values arrive as query parameters of a GET.

- **Dispo Call URL** (the agent set a status): a ``call.started`` when the talk began
  (``epoch`` - ``talk_time``) and a ``call.completed`` with the disposition at ``epoch``, so the
  agent's code wins over what the Start URL said; a ``sale.closed`` when the code has the
  ``sale`` flag (``order_id`` from ``uniqueid``, ``amount`` from an ``amount`` parameter if
  the template passes one, else 0).
- **Start Call URL** (the call reached an agent): ``call.started`` and ``call.answered``.
- **No Agent Call URL** (drops, no answers, busys, machines): a call no agent took,
  ``status`` is its code; in-group statuses (``XDROP``, ``TIMEOT`` …) are inbound.

The flags of the code (``shared.dispositions``) decide answered, contact and machine; an
unknown code is counted with no flags (answered when ``talk_time`` > 0). A code is looked up
as VICIdial sends it, then in capitals (statuses may be written in either). ``epoch`` is UTC;
without it ``SQLdate`` is read in the source time zone (the No Agent Call URL fills
``SQLdate`` but never ``epoch``).

A variable VICIdial has no value for stays in the URL as its placeholder
(``--A--amount--B--``): it is taken as absent. The lead is VICIdial's ``lead_id`` (a number,
its list's row) as ``vicidial:<lead_id>``, so that a row number is never mistaken for a phone
number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from services.ingest.adapters.common import (
    AdapterContext,
    RawEvent,
    TranslationError,
    amount,
    event_id,
    from_epoch,
    from_local,
    native_id,
    required,
    rfc3339,
    scope_fields,
    seconds,
    shifted,
    text,
)
from shared.dispositions import Flag

SYSTEM = "vicidial"
Kind = Literal["dispo", "start", "no-agent"]
# In-group (inbound) statuses of calls no agent took.
_INBOUND_STATUSES = frozenset({"XDROP", "TIMEOT", "AFTHRS", "NANQUE", "IQNANQ", "MAXCAL"})
# The dialer's own pseudo-users on calls that never reached a person.
_SYSTEM_USERS = frozenset({"VDAD", "VDCL", "VDAC"})
# A variable left unsubstituted: ``--A--name--B--`` (VICIdial matches names in any case).
_PLACEHOLDER = re.compile(r"^--A--\w+--B--$", re.IGNORECASE)


def filled(params: Mapping[str, str]) -> dict[str, str]:
    """The parameters VICIdial gave a value: those still holding their placeholder left out."""
    return {k: v for k, v in params.items() if not _PLACEHOLDER.match(v.strip())}


def _when(params: Mapping[str, str], context: AdapterContext) -> datetime:
    when = from_epoch(text(params, "epoch"), "epoch") or from_local(
        text(params, "SQLdate"), context.zone, "SQLdate"
    )
    if when is None:
        raise TranslationError("epoch", "is required (or SQLdate)")
    return when


def _direction(params: Mapping[str, str], code: str | None) -> str:
    given = (text(params, "direction") or "").lower()
    if given in ("inbound", "outbound"):
        return given
    return "inbound" if code in _INBOUND_STATUSES else "outbound"


def translate(kind: Kind, params: Mapping[str, str], context: AdapterContext) -> list[RawEvent]:
    """The v1 events of one VICIdial URL call."""
    params = filled(params)
    uniqueid = required(params, "uniqueid")
    when = _when(params, context)
    user = text(params, "user")
    agent = None if user is None or user.upper() in _SYSTEM_USERS else user
    campaign = text(params, "campaign") or text(params, "group")
    row = text(params, "lead_id")
    lead_id = (
        f"{SYSTEM}:{row}"
        if row
        else context.lead_from_number(SYSTEM, text(params, "phone_number"), "phone_number")
    )
    base: RawEvent = {
        "source": SYSTEM,
        "call_id": native_id(SYSTEM, uniqueid),
        **scope_fields(
            agent_id=agent,
            team_id=text(params, "user_group"),
            campaign_id=campaign,
            lead_id=lead_id,
        ),
    }
    if kind == "start":
        direction = _direction(params, None)
        return [
            {
                **base,
                "event_id": event_id(SYSTEM, uniqueid, "start", "started"),
                "type": "call.started",
                "occurred_at": rfc3339(when),
                "direction": direction,
            },
            {
                **base,
                "event_id": event_id(SYSTEM, uniqueid, "start", "answered"),
                "type": "call.answered",
                "occurred_at": rfc3339(when),
                "answered_by": "human",
                # Whether the decision-maker was reached is the disposition's to say.
                "contact_reached": False,
            },
        ]

    code_field = "dispo" if kind == "dispo" else "status"
    code = required(params, code_field)
    if not context.dispositions.known(code, campaign):
        code = code.upper()
    flags = context.dispositions.flags(code, campaign)
    talk = seconds(params.get("talk_time"), "talk_time") if kind == "dispo" else 0
    machine = Flag.answering_machine in flags
    answered = machine or Flag.human_answered in flags or talk > 0
    direction = _direction(params, code)
    started_at = shifted(when, talk)
    # A re-submitted disposition is a later URL call: its epoch is part of its id.
    version = text(params, "epoch") or when.strftime("%Y%m%dT%H%M%S")
    events: list[RawEvent] = [
        {
            **base,
            "event_id": event_id(SYSTEM, uniqueid, kind, version, "started"),
            "type": "call.started",
            "occurred_at": rfc3339(started_at),
            "direction": direction,
        },
        {
            **base,
            "event_id": event_id(SYSTEM, uniqueid, kind, version),
            "type": "call.completed",
            "occurred_at": rfc3339(when),
            "direction": direction,
            "answered": answered,
            "answered_by": "machine" if machine else "human",
            "contact_reached": Flag.contact in flags and not machine,
            "talk_seconds": talk,
            "disposition": code[:32],
        },
    ]
    if kind == "no-agent":
        # Whoever the URL names, no agent took this call.
        for event in events:
            event.pop("agent_id", None)
    if kind == "dispo" and Flag.sale in flags:
        if agent is None or lead_id is None:
            raise TranslationError(
                "user" if agent is None else "lead_id", "a sale needs the agent and the lead"
            )
        events.append(
            {
                "source": SYSTEM,
                "event_id": event_id(SYSTEM, uniqueid, "sale"),
                "type": "sale.closed",
                "occurred_at": rfc3339(when),
                "order_id": native_id(SYSTEM, f"vicidial:{uniqueid}"),
                "amount": str(amount(params.get("amount"), "amount")),
                **{k: v for k, v in base.items() if k not in ("source", "call_id")},
            }
        )
    return events
