"""Generated calls rendered as each dialer's native records, with the truth they imply.

A call is drawn as what happened (outcome, talk, who), written independently of the
adapters: the truth is the KPI definitions of ``kpis.md`` and ``adapters.md`` applied to
what happened, and the native records are written the way each vendor documents them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

# What a call did. "human": answered by the customer and talked to an agent.
OUTCOMES = (
    "human",
    "machine",
    "busy",
    "no_answer",
    "failed",
    "drop",
    "inbound_human",
    "inbound_abandoned",
)


@dataclass(frozen=True)
class Call:
    index: int
    outcome: str
    start: datetime
    agent: str
    team: str
    campaign: str
    number: str
    ring: int
    talk: int
    contact: bool  # the decision-maker was reached (human calls)
    sale: Decimal | None
    child_leg: bool  # Twilio: the customer leg is a <Dial> child of the agent's leg

    @property
    def inbound(self) -> bool:
        return self.outcome.startswith("inbound")

    @property
    def native_id(self) -> str:
        return f"{self.index:06d}"


def generate(seed: int, start: datetime, calls: int, agents: int = 4) -> list[Call]:
    rng = random.Random(seed)
    out: list[Call] = []
    for index in range(calls):
        outcome = rng.choice(OUTCOMES)
        human = outcome in ("human", "inbound_human")
        talk = rng.randint(5, 400) if human else (rng.randint(3, 30) if outcome == "machine" else 0)
        agent_number = rng.randrange(agents)
        out.append(
            Call(
                index=index,
                outcome=outcome,
                start=start + timedelta(seconds=rng.randrange(0, 8 * 3600)),
                agent=f"agent-{agent_number}",
                team=f"team-{agent_number % 2}",
                campaign="spring",
                number=f"+86138{rng.randrange(10**8):08d}",
                ring=rng.randint(2, 20),
                talk=talk,
                contact=human and rng.random() < 0.7,
                sale=Decimal(rng.randrange(100, 5000)) if human and rng.random() < 0.25 else None,
                child_leg=outcome == "human" and rng.random() < 0.4,
            )
        )
    return out


def truth(
    calls: list[Call],
    *,
    sales: bool = True,
    contact_from_code: bool = True,
    machine_talk: bool = False,
    drop_talk: int = 0,
    abandoned_is_drop: bool = False,
) -> dict[str, Any]:
    """The floor's KPIs, by their definitions, for what a system reports of each call.

    ``contact_from_code``: the agent's code says whether the decision-maker was reached
    (a sale always is); otherwise every call a human answered and an agent took is one.
    ``machine_talk``: the system reports talk on machine answers (Twilio's CallDuration).
    ``drop_talk``: seconds a system reports on a drop. ``abandoned_is_drop``: the system's
    code for an inbound call no agent took is a drop code (VICIdial's XDROP).
    """
    total: Counter[str] = Counter()
    revenue = Decimal(0)
    for call in calls:
        total["inbound_calls" if call.inbound else "dials"] += 1
        human = call.outcome in ("human", "inbound_human")
        dropped = call.outcome == "drop" or (
            abandoned_is_drop and call.outcome == "inbound_abandoned"
        )
        connected = human or dropped
        total["connects"] += connected
        total["inbound_connects"] += connected and call.inbound
        if contact_from_code:
            contact = human and (call.contact or (sales and call.sale is not None))
        else:
            contact = human
        total["contacts"] += contact
        total["drops"] += dropped
        total["abandoned"] += call.outcome == "inbound_abandoned"
        total["machine_answers"] += call.outcome == "machine"
        if human or (machine_talk and call.outcome == "machine"):
            total["talk_seconds"] += call.talk
        if call.outcome == "drop":
            total["talk_seconds"] += drop_talk
        if sales and call.sale is not None:
            total["sales"] += 1
            revenue += call.sale
    return {**total, "revenue": revenue}


def lead_of(secret: str, system: str, number: str) -> str:
    return f"{system}:" + hmac.new(secret.encode(), number.encode(), hashlib.sha256).hexdigest()


# Twilio ------------------------------------------------------------------------------------


def _rfc2822(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def twilio_callbacks(call: Call, rng: random.Random) -> list[tuple[dict[str, str], dict[str, str]]]:
    """``(query, form)`` of every status callback of the call, as Twilio posts them."""
    sid = f"CA{call.native_id:0>32}"
    query = {"team_id": call.team, "campaign_id": call.campaign}
    if call.outcome != "drop":
        query["agent_id"] = call.agent
    direction = "inbound" if call.inbound else "outbound-api"
    customer = (
        {"From": call.number, "To": "+861010000000"}
        if call.inbound
        else {"From": "+861010000000", "To": call.number}
    )
    common = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallbackSource": "call-progress-events",
        "CallerName": "ZHANG SAN",
        **customer,
    }
    only_completed = rng.random() < 0.3
    answered_at = call.start + timedelta(seconds=call.ring)
    end = answered_at + timedelta(seconds=call.talk)
    amd = {"machine": "machine_end_beep"}.get(call.outcome, "human")

    def leg(
        sid_: str,
        direction_: str,
        parent: str | None,
        events: list[tuple[str, datetime, dict[str, str]]],
    ) -> list[tuple[dict[str, str], dict[str, str]]]:
        out = []
        for sequence, (status, when, extra) in enumerate(events):
            form = {
                **common,
                "CallSid": sid_,
                "CallStatus": status,
                "Direction": direction_,
                "SequenceNumber": str(sequence),
                "Timestamp": _rfc2822(when),
                **extra,
            }
            if parent:
                form["ParentCallSid"] = parent
            out.append((query, form))
        return out

    if call.child_leg:
        # The agent's leg (REST call), then the <Dial> to the customer as a child leg.
        parent_end = end + timedelta(seconds=1)
        parent_talk = int((parent_end - call.start).total_seconds())
        agent_leg = leg(
            sid,
            "outbound-api",
            None,
            [
                ("initiated", call.start, {}),
                ("in-progress", call.start + timedelta(seconds=1), {}),
                ("completed", parent_end, {"CallDuration": str(parent_talk), "Duration": "9"}),
            ],
        )
        child = f"CB{call.native_id:0>32}"
        customer_leg = leg(
            child,
            "outbound-dial",
            sid,
            [
                ("initiated", call.start + timedelta(seconds=2), {}),
                ("ringing", call.start + timedelta(seconds=2), {}),
                ("in-progress", answered_at, {"AnsweredBy": "human"}),
                (
                    "completed",
                    end,
                    {"CallDuration": str(call.talk), "Duration": "1", "AnsweredBy": "human"},
                ),
            ],
        )
        return agent_leg + customer_leg
    events: list[tuple[str, datetime, dict[str, str]]] = [
        ("initiated", call.start, {}),
        ("ringing", call.start, {}),
    ]
    if call.outcome in ("human", "inbound_human", "machine", "drop"):
        events.append(("in-progress", answered_at, {"AnsweredBy": amd}))
        talk = 1 if call.outcome == "drop" else call.talk
        events.append(
            (
                "completed",
                answered_at + timedelta(seconds=talk),
                {"CallDuration": str(talk), "Duration": "1", "AnsweredBy": amd},
            )
        )
    else:
        status = {
            "busy": "busy",
            "no_answer": "no-answer",
            "failed": "failed",
            "inbound_abandoned": "canceled",
        }[call.outcome]
        events.append(
            (
                status,
                call.start + timedelta(seconds=call.ring),
                {"CallDuration": "0", "Duration": "0", "SipResponseCode": "486"},
            )
        )
    rendered = leg(sid, direction, None, events)
    return rendered[-1:] if only_completed else rendered


def twilio_signature(token: str, url: str, form: dict[str, str]) -> str:
    """Twilio's documented signature: the URL, then each name and value sorted; HMAC-SHA1."""
    data = url + "".join(f"{name}{form[name]}" for name in sorted(form))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


# VICIdial ----------------------------------------------------------------------------------

VICIDIAL_CODES = {
    "busy": "AB",
    "no_answer": "NA",
    "failed": "ADC",
    "machine": "AA",
    "drop": "DROP",
    "inbound_abandoned": "XDROP",
}


def vicidial_urls(call: Call) -> list[tuple[str, dict[str, str]]]:
    """``(route, query)`` of the URLs VICIdial calls for this call."""
    common = {
        "uniqueid": f"1762{call.native_id}.{call.index}",
        "lead_id": f"L{call.index}",
        "campaign": call.campaign,
        "phone_number": call.number.removeprefix("+86"),
        "called_count": "1",
    }
    end = call.start + timedelta(seconds=call.ring + call.talk)
    if call.outcome in VICIDIAL_CODES:
        return [
            (
                "no-agent",
                {
                    **common,
                    "user": "VDAD",
                    "status": VICIDIAL_CODES[call.outcome],
                    "epoch": str(int(end.timestamp())),
                },
            )
        ]
    who = {**common, "user": call.agent, "user_group": call.team}
    if call.inbound:
        who["direction"] = "inbound"
    code = "SALE" if call.sale is not None else ("NI" if call.contact else "NP")
    dispo = {
        **who,
        "dispo": code,
        "talk_time": str(call.talk),
        "epoch": str(int((end + timedelta(seconds=7)).timestamp())),
    }
    if call.sale is not None:
        dispo["amount"] = str(call.sale)
    answered = call.start + timedelta(seconds=call.ring)
    return [
        (
            "start",
            {**who, "dispo": "INCALL", "talk_time": "0", "epoch": str(int(answered.timestamp()))},
        ),
        ("dispo", dispo),
    ]


# Amazon Connect ----------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def connect_records(call: Call) -> list[dict[str, Any]]:
    """Two copies of the contact record: a first one, and one updated a day later."""
    answered_at = call.start + timedelta(seconds=call.ring)
    end = answered_at + timedelta(seconds=call.talk)
    record: dict[str, Any] = {
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "Channel": "VOICE",
        "ContactId": f"00000000-0000-4000-8000-{call.index:012d}",
        "InitiationMethod": "INBOUND" if call.inbound else "OUTBOUND",
        "InitiationTimestamp": _iso(call.start),
        "DisconnectTimestamp": _iso(end),
        "CustomerEndpoint": {"Address": call.number, "Type": "TELEPHONE_NUMBER"},
        "SystemEndpoint": {"Address": "+861010000000", "Type": "TELEPHONE_NUMBER"},
        "Attributes": {"team_id": call.team, "campaign_id": call.campaign},
        "Agent": None,
        "Queue": None,
        "AnsweringMachineDetectionStatus": None,
    }
    if call.inbound:
        record["ConnectedToSystemTimestamp"] = _iso(call.start)
        record["Queue"] = {"Name": "sales-in", "Duration": call.ring}
    elif call.outcome in ("human", "machine", "drop"):
        record["ConnectedToSystemTimestamp"] = _iso(answered_at)
        record["AnsweringMachineDetectionStatus"] = (
            "VOICEMAIL_BEEP" if call.outcome == "machine" else "HUMAN_ANSWERED"
        )
    elif call.outcome == "busy":
        record["AnsweringMachineDetectionStatus"] = "SIT_TONE_BUSY"
    if call.outcome in ("human", "inbound_human"):
        record["Agent"] = {
            "Username": call.agent,
            "AgentInteractionDuration": call.talk,
            "AfterContactWorkDuration": 10,
            "ConnectedToAgentTimestamp": _iso(answered_at),
        }
        code = "SALE" if call.sale is not None else ("NI" if call.contact else "NP")
        record["Attributes"] = {**record["Attributes"], "disposition": code}
        if call.sale is not None:
            record["Attributes"]["amount"] = str(call.sale)
    first = json.loads(json.dumps(record))
    first["LastUpdateTimestamp"] = _iso(end + timedelta(seconds=30))
    if first["Agent"]:
        # The first copy was written before the agent's work was final.
        first["Agent"]["AgentInteractionDuration"] = max(call.talk - 3, 0)
        first["Attributes"]["disposition"] = "CALLBK"
    second = json.loads(json.dumps(record))
    second["LastUpdateTimestamp"] = _iso(end + timedelta(days=1))
    return [first, second]


def firehose_request(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "timestamp": 1762045200000,
        "records": [{"data": base64.b64encode(json.dumps(r).encode()).decode()} for r in records],
    }


# FreeSWITCH --------------------------------------------------------------------------------


def freeswitch_legs(call: Call) -> list[dict[str, Any]]:
    """The JSON CDRs mod_json_cdr posts: the A-leg, and the B-leg when one was bridged."""
    a_uuid = f"aaaaaaaa-0000-4000-8000-{call.index:012d}"
    b_uuid = f"bbbbbbbb-0000-4000-8000-{call.index:012d}"
    start = int(call.start.timestamp())
    answer = start + call.ring
    end = answer + call.talk
    who = {
        "callboard_agent_id": call.agent,
        "callboard_team_id": call.team,
        "callboard_campaign_id": call.campaign,
        "callboard_direction": "inbound" if call.inbound else "outbound",
    }
    bridged = call.outcome in ("human", "inbound_human")
    a_leg: dict[str, str] = {
        "uuid": a_uuid,
        "call_uuid": a_uuid,
        "direction": "inbound",
        "start_epoch": str(start),
        "end_epoch": str(end if bridged else answer),
        "caller_id_number": call.number if call.inbound else "1001",
        "caller_id_name": "ZHANG SAN",
        "destination_number": "1001" if call.inbound else call.number,
        **who,
    }
    if bridged:
        a_leg.update(
            {
                "bridge_epoch": str(answer),
                "answer_epoch": str(start if call.inbound else answer),
                "bleg_uuid": b_uuid,
                "billsec": str(end - start),
                "hangup_cause": "NORMAL_CLEARING",
            }
        )
        b_leg = {
            "uuid": b_uuid,
            "call_uuid": a_uuid,
            "originating_leg_uuid": a_uuid,
            "direction": "outbound",
            "start_epoch": str(start + 1),
            "answer_epoch": str(answer),
            "end_epoch": str(end),
            "billsec": str(call.talk),
            "destination_number": "1001" if call.inbound else call.number,
            "caller_id_number": call.number if call.inbound else "1001",
            **who,
        }
        return [{"variables": a_leg}, {"variables": b_leg}]
    cause = {
        "busy": "USER_BUSY",
        "no_answer": "NO_ANSWER",
        "failed": "UNALLOCATED_NUMBER",
        "inbound_abandoned": "ORIGINATOR_CANCEL",
    }[call.outcome]
    a_leg.update(
        {
            "billsec": "0",
            "hangup_cause": "NORMAL_CLEARING" if call.inbound else cause,
            "originate_disposition": cause,
        }
    )
    return [{"variables": a_leg}]


# Asterisk ----------------------------------------------------------------------------------


def _q(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def asterisk_lines(call: Call, zone: Any, agents: int) -> list[str]:
    """``Master.csv`` lines (cdr_csv with uniqueid, userfield and newcdrcolumns)."""
    # The linkedid is the first channel's uniqueid: the epoch it was made at, and a counter.
    linked = f"{int(call.start.timestamp())}.{call.index}"
    agent_number = int(call.agent.rsplit("-", 1)[1])
    extension = f"10{agent_number:02d}"

    def stamp(value: datetime) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    def line(
        src: str,
        dst: str,
        channel: str,
        dstchannel: str,
        start: datetime,
        answer: datetime | None,
        end: datetime,
        billsec: int,
        disposition: str,
        sequence: int,
    ) -> str:
        duration = int((end - start).total_seconds())
        answer_text = _q(stamp(answer)) if answer else ""
        return ",".join(
            [
                _q(""),
                _q(src),
                _q(dst),
                _q("from-internal"),
                _q(f'"ZHANG SAN" <{src}>'),
                _q(channel),
                _q(dstchannel),
                _q("Dial"),
                _q(dstchannel.split("-")[0]),
                _q(stamp(start)),
                answer_text,
                _q(stamp(end)),
                str(duration),
                str(billsec),
                _q(disposition),
                _q("DOCUMENTATION"),
                _q(f"{linked[:-2]}{sequence}"),
                _q(""),
                _q(""),
                _q(linked),
                str(sequence),
            ]
        )

    number = call.number.removeprefix("+86")
    answered_at = call.start + timedelta(seconds=call.ring)
    end = answered_at + timedelta(seconds=call.talk)
    if call.inbound:
        trunk = f"SIP/trunk-{call.index:08x}"
        lines = []
        for other in range(agents):
            if call.outcome == "inbound_human" and other == agent_number:
                continue
            lines.append(
                line(
                    number,
                    "600",
                    trunk,
                    f"SIP/10{other:02d}-{other:08x}",
                    call.start,
                    None,
                    answered_at,
                    0,
                    "NO ANSWER",
                    10 + other,
                )
            )
        if call.outcome == "inbound_human":
            lines.append(
                line(
                    number,
                    "600",
                    trunk,
                    f"SIP/{extension}-{call.index:08x}",
                    call.start,
                    answered_at,
                    end,
                    call.talk,
                    "ANSWERED",
                    30,
                )
            )
        return lines
    channel = f"SIP/{extension}-{call.index:08x}"
    dstchannel = f"SIP/trunk-{call.index:08x}"
    if call.outcome == "human":
        return [
            line(
                extension,
                number,
                channel,
                dstchannel,
                call.start,
                answered_at,
                end,
                call.talk,
                "ANSWERED",
                1,
            )
        ]
    disposition = {"busy": "BUSY", "no_answer": "NO ANSWER", "failed": "FAILED"}[call.outcome]
    return [
        line(
            extension, number, channel, dstchannel, call.start, None, answered_at, 0, disposition, 1
        )
    ]
