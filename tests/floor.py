"""A simulated call floor for tests: the truth of what happened, and the events that say it.

The truth is a list of calls, quotes and sales with their final facts. The events are one
way a dialer might report them: split ``call.*`` events or one ``call.completed``, corrected
dispositions, cancelled sales, duplicates and any order. The reference KPIs are computed
from the truth in plain Python and share no code with the pipeline.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.reference import CODE_FLAGS


@dataclass
class TrueCall:
    call_id: str
    agent_id: str
    team_id: str
    campaign_id: str
    lead_id: str
    start: datetime
    direction: str
    answered: bool
    answered_by: str
    contact_reached: bool
    talk_seconds: int
    wrap_seconds: int
    disposition: str | None
    survey: int | None = None
    # A call the dialer connected that no agent took: its events name no agent.
    no_agent: bool = False


@dataclass
class TrueSale:
    order_id: str
    agent_id: str
    team_id: str
    campaign_id: str
    lead_id: str
    at: datetime
    amount: Decimal
    margin: Decimal
    customer_type: str
    cancelled: bool
    # Money collected for the order (回款): (when, amount).
    payments: list[tuple[datetime, Decimal]] = field(default_factory=list)


@dataclass
class LeadFact:
    """Something an agent did with a lead, an entity of its own."""

    event_id: str
    agent_id: str
    team_id: str
    campaign_id: str
    lead_id: str
    at: datetime


@dataclass
class TrueQuote(LeadFact):
    pass


@dataclass
class TrueStage(LeadFact):
    """A lead's move in the funnel."""

    stage: str


# The funnel's stages (events.md); a lead that reaches intent (B) or ready (A) is an intent lead.
INTENT_STAGES = ("intent", "ready")


@dataclass
class Floor:
    calls: list[TrueCall] = field(default_factory=list)
    sales: list[TrueSale] = field(default_factory=list)
    quotes: list[TrueQuote] = field(default_factory=list)
    stages: list[TrueStage] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def _iso(value: datetime) -> str:
    return value.isoformat()


def generate_floor(
    seed: int,
    *,
    start: datetime,
    hours: float = 8,
    teams: int = 2,
    agents_per_team: int = 4,
    calls_per_agent: int = 60,
    leads: int = 400,
    duplicate_share: float = 0.1,
    effective_threshold: int = 60,
    flag_codes: bool = False,
) -> Floor:
    """A floor inside ``[start, start + hours)``; every call starts at least 10 min early.

    With ``flag_codes`` the calls also carry codes of every flag (drops, machines, do not
    call, callbacks, codes the table does not know), some calls no agent took and some with
    no code at all; the wrong first code that a later one corrects is then ``DNC``.

    Some reached leads move in the funnel (``lead.stage_changed``, intent and ready among
    the stages) and some sales are paid in one or two payments, cancelled ones too. Those
    are drawn from a generator of their own, apart from the calls, quotes and sales.
    """
    rng = random.Random(seed)
    funnel = random.Random(f"{seed}-funnel")
    floor = Floor()
    span = int(hours * 3600) - 900
    lead_ids = [f"lead-{seed}-{i}" for i in range(leads)]
    seq = 0

    def next_id(prefix: str) -> str:
        nonlocal seq
        seq += 1
        return f"{prefix}-{seed}-{seq}"

    for t in range(teams):
        team_id = f"team-{t}"
        for a in range(agents_per_team):
            agent_id = f"agent-{t}-{a}"
            for _ in range(calls_per_agent):
                at = start + timedelta(seconds=rng.randrange(span))
                direction = "inbound" if rng.random() < 0.1 else "outbound"
                answered = rng.random() < 0.55
                answered_by = "machine" if answered and rng.random() < 0.1 else "human"
                human = answered and answered_by == "human"
                contact = human and rng.random() < 0.7
                talk = rng.choice([5, 30, 59, 60, 61, 120, 300]) if human else 0
                wrap = rng.randrange(0, 40) if human else 0
                call = TrueCall(
                    call_id=next_id("call"),
                    agent_id=agent_id,
                    team_id=team_id,
                    campaign_id=rng.choice(["spring", "renewal"]),
                    lead_id=rng.choice(lead_ids),
                    start=at,
                    direction=direction,
                    answered=answered,
                    answered_by=answered_by,
                    contact_reached=contact,
                    talk_seconds=talk,
                    wrap_seconds=wrap,
                    disposition=rng.choice(["NI", "CALLBK", "SALE", "B"]) if human else "NA",
                    survey=rng.randint(1, 5) if human and rng.random() < 0.2 else None,
                )
                if flag_codes:
                    _flag_codes(call, rng)
                floor.calls.append(call)
                floor.events.extend(
                    _call_events(call, rng, next_id, "DNC" if flag_codes else "WRONG")
                )
                if contact and not call.no_agent and funnel.random() < 0.3:
                    stage = TrueStage(
                        next_id("stage"),
                        agent_id,
                        team_id,
                        call.campaign_id,
                        call.lead_id,
                        at + timedelta(seconds=talk + 30),
                        funnel.choice(["acknowledged", "intent", "intent", "ready", "lost"]),
                    )
                    floor.stages.append(stage)
                    floor.events.append(_stage_event(stage))
                if contact and not call.no_agent and rng.random() < 0.4:
                    quote = TrueQuote(
                        next_id("quote"),
                        agent_id,
                        team_id,
                        call.campaign_id,
                        call.lead_id,
                        at + timedelta(seconds=talk),
                    )
                    floor.quotes.append(quote)
                    floor.events.append(
                        {
                            "event_id": quote.event_id,
                            "type": "quote.given",
                            "occurred_at": _iso(quote.at),
                            "agent_id": agent_id,
                            "team_id": team_id,
                            "campaign_id": call.campaign_id,
                            "lead_id": call.lead_id,
                            "amount": str(rng.randrange(100, 5000)),
                        }
                    )
                    if rng.random() < 0.5:
                        sale = TrueSale(
                            order_id=next_id("order"),
                            agent_id=agent_id,
                            team_id=team_id,
                            campaign_id=call.campaign_id,
                            lead_id=call.lead_id,
                            at=at + timedelta(seconds=talk + 60),
                            amount=Decimal(rng.randrange(10000, 500000)) / 100,
                            margin=Decimal(rng.randrange(1000, 50000)) / 100,
                            customer_type=rng.choice(["new", "new", "existing"]),
                            cancelled=rng.random() < 0.15,
                        )
                        if funnel.random() < 0.6:
                            sale.payments = [
                                (
                                    sale.at + timedelta(seconds=funnel.randrange(60, 300)),
                                    (sale.amount * funnel.randrange(10, 100) / 100).quantize(
                                        Decimal("0.01")
                                    ),
                                )
                                for _ in range(funnel.choice([1, 1, 2]))
                            ]
                        floor.sales.append(sale)
                        floor.events.extend(_sale_events(sale, rng, next_id))
    duplicates = [
        dict(e) for e in rng.sample(floor.events, int(len(floor.events) * duplicate_share))
    ]
    floor.events.extend(duplicates)
    rng.shuffle(floor.events)
    return floor


def call_events(
    call_id: str,
    start: datetime,
    *,
    lead: str,
    agent: str | None = None,
    team: str | None = None,
    campaign: str | None = None,
    direction: str = "outbound",
    answered_by: str | None = None,
    contact: bool = True,
    talk: int = 0,
    wrap: int | None = None,
    resolved: bool | None = None,
    codes: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """One hand-written call as separate events: started, answered when ``answered_by``
    is given, ended after ``talk`` seconds, then one disposition a second per code."""
    common: dict[str, Any] = {"call_id": call_id}
    if agent is not None:
        common["agent_id"] = agent
    started: dict[str, Any] = {
        "event_id": f"{call_id}-s",
        "type": "call.started",
        "occurred_at": start.isoformat(),
        **common,
        "lead_id": lead,
        "direction": direction,
    }
    if team is not None:
        started["team_id"] = team
    if campaign is not None:
        started["campaign_id"] = campaign
    events = [started]
    if answered_by is not None:
        events.append(
            {
                "event_id": f"{call_id}-a",
                "type": "call.answered",
                "occurred_at": (start + timedelta(seconds=5)).isoformat(),
                **common,
                "answered_by": answered_by,
                "contact_reached": contact,
            }
        )
    ended: dict[str, Any] = {
        "event_id": f"{call_id}-e",
        "type": "call.ended",
        "occurred_at": (start + timedelta(seconds=5 + talk)).isoformat(),
        **common,
        "talk_seconds": talk,
    }
    if wrap is not None:
        ended["wrap_seconds"] = wrap
    if resolved is not None:
        ended["resolved"] = resolved
    events.append(ended)
    for n, code in enumerate(codes):
        events.append(
            {
                "event_id": f"{call_id}-d{n}",
                "type": "call.dispositioned",
                "occurred_at": (start + timedelta(seconds=10 + talk + n)).isoformat(),
                **common,
                "disposition": code,
            }
        )
    return events


def _flag_codes(call: TrueCall, rng: random.Random) -> None:
    """Codes of every flag for ``call``, and now and then no agent or no code."""
    if call.answered and call.answered_by == "human":
        call.disposition = rng.choice(
            ["NI", "CALLBK", "SALE", "B", "DNC", "DEC", "ZZZ", "A", "DROP", "PDROP"]
        )
    elif call.answered:
        call.disposition = rng.choice(["NA", "AA", "AM", "NI"])
    elif call.direction == "inbound":
        call.disposition = rng.choice(["TIMEOT", "NA"])
    else:
        call.disposition = rng.choice(["NA", "B", "DNCL"])
    if rng.random() < 0.1:
        call.disposition = None
    if call.answered and rng.random() < 0.05:
        call.no_agent = True
        call.survey = None


def _call_events(
    call: TrueCall, rng: random.Random, next_id: Any, wrong_code: str = "WRONG"
) -> list[dict[str, Any]]:
    common = {"call_id": call.call_id}
    if not call.no_agent:
        common["agent_id"] = call.agent_id
    first = {
        **common,
        "team_id": call.team_id,
        "campaign_id": call.campaign_id,
        "lead_id": call.lead_id,
    }
    events: list[dict[str, Any]] = []
    # A wrong first code, corrected later: the later code must win.
    wrong = {
        "event_id": next_id("ev"),
        "type": "call.dispositioned",
        "occurred_at": _iso(call.start + timedelta(seconds=call.talk_seconds + 5)),
        **common,
        "disposition": wrong_code,
    }
    final_disposition = {
        "event_id": next_id("ev"),
        "type": "call.dispositioned",
        "occurred_at": _iso(call.start + timedelta(seconds=call.talk_seconds + 50)),
        **common,
        "disposition": call.disposition,
    }
    style = rng.random()
    if style < 0.3:
        completed: dict[str, Any] = {
            "event_id": next_id("ev"),
            "type": "call.completed",
            "occurred_at": _iso(call.start),
            **first,
            "direction": call.direction,
            "answered": call.answered,
            "answered_by": call.answered_by,
            "contact_reached": call.contact_reached,
            "talk_seconds": call.talk_seconds,
            "wrap_seconds": call.wrap_seconds,
        }
        if call.disposition is None:
            pass
        elif rng.random() < 0.5:
            completed["disposition"] = wrong_code
            events.append(final_disposition)
        else:
            completed["disposition"] = call.disposition
        events.append(completed)
    else:
        events.append(
            {
                "event_id": next_id("ev"),
                "type": "call.started",
                "occurred_at": _iso(call.start),
                **first,
                "direction": call.direction,
            }
        )
        if call.answered:
            events.append(
                {
                    "event_id": next_id("ev"),
                    "type": "call.answered",
                    "occurred_at": _iso(call.start + timedelta(seconds=8)),
                    **common,
                    "answered_by": call.answered_by,
                    "contact_reached": call.contact_reached,
                }
            )
        events.append(
            {
                "event_id": next_id("ev"),
                "type": "call.ended",
                "occurred_at": _iso(call.start + timedelta(seconds=8 + call.talk_seconds)),
                **common,
                "talk_seconds": call.talk_seconds,
                "wrap_seconds": call.wrap_seconds,
            }
        )
        if call.disposition is not None:
            if style < 0.6:
                events.append(wrong)
            events.append(final_disposition)
    if call.survey is not None:
        events.append(
            {
                "event_id": next_id("ev"),
                "type": "survey.completed",
                "occurred_at": _iso(call.start + timedelta(seconds=call.talk_seconds + 120)),
                "agent_id": call.agent_id,
                "call_id": call.call_id,
                "score": call.survey,
            }
        )
    return events


def _sale_events(sale: TrueSale, rng: random.Random, next_id: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "event_id": next_id("ev"),
            "type": "sale.closed",
            "occurred_at": _iso(sale.at),
            "agent_id": sale.agent_id,
            "team_id": sale.team_id,
            "campaign_id": sale.campaign_id,
            "lead_id": sale.lead_id,
            "order_id": sale.order_id,
            "amount": str(sale.amount),
            "margin": str(sale.margin),
            "customer_type": sale.customer_type,
        }
    ]
    if sale.cancelled:
        events.append(
            {
                "event_id": next_id("ev"),
                "type": "sale.cancelled",
                "occurred_at": _iso(sale.at + timedelta(minutes=rng.randrange(1, 30))),
                "agent_id": sale.agent_id,
                "order_id": sale.order_id,
            }
        )
    for at, amount in sale.payments:
        events.append(
            {
                "event_id": next_id("ev"),
                "type": "payment.received",
                "occurred_at": _iso(at),
                "agent_id": sale.agent_id,
                "team_id": sale.team_id,
                "campaign_id": sale.campaign_id,
                "order_id": sale.order_id,
                "amount": str(amount),
            }
        )
    return events


def _stage_event(stage: TrueStage) -> dict[str, Any]:
    return {
        "event_id": stage.event_id,
        "type": "lead.stage_changed",
        "occurred_at": _iso(stage.at),
        "agent_id": stage.agent_id,
        "team_id": stage.team_id,
        "campaign_id": stage.campaign_id,
        "lead_id": stage.lead_id,
        "stage": stage.stage,
    }


def reference_by_agent(floor: Floor, effective_threshold: int = 60) -> dict[str, dict[str, Any]]:
    """Every KPI the floor exercises, per agent, from the truth."""

    def new_row() -> dict[str, Any]:
        row: dict[str, Any] = defaultdict(int)
        row.update(
            dispositions=defaultdict(int),
            revenue=Decimal(0),
            margin=Decimal(0),
            collections=Decimal(0),
        )
        return row

    out: dict[str, dict[str, Any]] = defaultdict(new_row)
    lead_sets: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for call in floor.calls:
        agent_id = "" if call.no_agent else call.agent_id
        row = out[agent_id]
        flags = CODE_FLAGS.get(call.disposition or "", set())
        machine = "answering_machine" in flags or (
            call.answered and call.answered_by == "machine" and "human_answered" not in flags
        )
        drop = not machine and ("drop" in flags or (call.answered and call.no_agent))
        human = not machine and (call.answered or drop)
        contact = human and not drop and call.contact_reached
        if call.direction == "outbound":
            row["dials"] += 1
            lead_sets[agent_id]["dialed"].add(call.lead_id)
        else:
            row["inbound_calls"] += 1
            # Every call of the floor ends: abandoned unless an agent answered.
            row["abandoned"] += int(not (human and not drop))
        row["connects"] += int(human)
        row["inbound_connects"] += int(human and call.direction == "inbound")
        row["contacts"] += int(contact)
        row["drops"] += int(drop)
        row["machine_answers"] += int(machine)
        row["dnc_marks"] += int("dnc" in flags)
        row["callbacks_scheduled"] += int("callback" in flags)
        row["not_interested"] += int("not_interested" in flags)
        if contact:
            lead_sets[agent_id]["reached"].add(call.lead_id)
        effective = human and call.talk_seconds >= effective_threshold
        row["effective_calls"] += int(effective)
        row["effective_talk_seconds"] += call.talk_seconds if effective else 0
        row["talk_seconds"] += call.talk_seconds
        row["wrap_seconds"] += call.wrap_seconds
        if call.disposition is not None:
            row["dispositions"][call.disposition] += 1
        if call.survey is not None:
            row["csat_responses"] += 1
            row["csat_sum"] += call.survey
    for quote in floor.quotes:
        out[quote.agent_id]["quotes"] += 1
        lead_sets[quote.agent_id]["quoted"].add(quote.lead_id)
    for sale in floor.sales:
        row = out[sale.agent_id]
        if sale.cancelled:
            continue
        row["sales"] += 1
        row["revenue"] += sale.amount
        row["margin"] += sale.margin
        row[f"{sale.customer_type}_customer_sales"] += 1
        row["collections"] += sum((amount for _, amount in sale.payments), Decimal(0))
        lead_sets[sale.agent_id]["won"].add(sale.lead_id)
    for stage in floor.stages:
        if stage.stage in INTENT_STAGES:
            lead_sets[stage.agent_id]["intent"].add(stage.lead_id)
    for agent_id, sets in lead_sets.items():
        for fact, leads in sets.items():
            out[agent_id][f"leads_{fact}"] = len(leads)
    return {
        agent: {**values, "dispositions": dict(values["dispositions"])}
        for agent, values in out.items()
    }
