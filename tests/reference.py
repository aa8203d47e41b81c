"""An independent reference calculation of the KPIs, straight from raw events.

Written from ``events.md`` and ``kpis.md`` alone, in plain Python, sharing no code with the
aggregator or the API, so that it can catch a mistake in either.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from tests.pipeline import Pipeline

# What the pipeline tests compare: stored counters, lead counts, money, and ratios as
# (numerator, denominator) of base values.
COUNTERS = (
    "dials",
    "inbound_calls",
    "connects",
    "inbound_connects",
    "contacts",
    "effective_calls",
    "talk_seconds",
    "effective_talk_seconds",
    "wrap_seconds",
    "quotes",
    "sales",
    "new_customer_sales",
    "existing_customer_sales",
    "csat_responses",
    "csat_sum",
    "drops",
    "abandoned",
    "machine_answers",
    "dnc_marks",
    "callbacks_scheduled",
    "not_interested",
)
LEADS = ("leads_dialed", "leads_reached", "leads_quoted", "leads_won", "leads_intent")
MONEY = ("revenue", "margin", "collections")
# kpis.md's ratios as (the base values summed above the line, the one below).
RATIOS = {
    "connect_rate": (("connects",), "dials"),
    "contact_rate": (("leads_reached",), "leads_dialed"),
    "quote_rate": (("leads_quoted",), "leads_reached"),
    "close_rate": (("leads_won",), "leads_quoted"),
    "conversion_rate": (("leads_won",), "leads_dialed"),
    "intent_rate": (("leads_intent",), "leads_reached"),
    "lead_conversion_rate": (("leads_won",), "leads_intent"),
    "calls_per_lead": (("dials",), "leads_dialed"),
    "avg_talk_seconds": (("talk_seconds",), "connects"),
    "avg_handle_seconds": (("talk_seconds", "wrap_seconds"), "connects"),
    "margin_rate": (("margin",), "revenue"),
    "csat_avg": (("csat_sum",), "csat_responses"),
    "drop_rate": (("drops",), "connects"),
    "abandon_rate": (("abandoned",), "inbound_calls"),
}
# Ratios in money, shown to the cent.
MONEY_RATIOS = {
    "avg_revenue_per_won_lead": ("revenue", "leads_won"),
    "avg_order_value": ("revenue", "sales"),
}
# What the comparisons leave to tests of their own: the time logged in and the rates per
# hour of it (``logged_in_seconds`` below, with the agents' states), and the first-call
# resolution, which depends on the whole period asked for, not on its hours.
NOT_COMPARED = (
    "logged_in_seconds",
    "dials_per_hour",
    "sales_per_hour",
    "contacts_per_hour",
    "occupancy",
    "capacity",
    "resolved_first_call",
    "fcr_rate",
)

# Every KPI the comparisons ask the API for.
METRICS = ",".join((*COUNTERS, *LEADS, *MONEY, *RATIOS, *MONEY_RATIOS, "dispositions"))

# The flags of the codes the test floors use, copied from VICIdial's status table with the
# corrections kpis.md states (SALE is a contact, AA a machine, the drop statuses drops).
CODE_FLAGS: dict[str, set[str]] = {
    "SALE": {"human_answered", "sale", "contact"},
    "NI": {"human_answered", "contact", "not_interested"},
    "DEC": {"human_answered", "contact"},
    "CALLBK": {"human_answered", "contact", "callback"},
    "DNC": {"human_answered", "dnc"},
    "DNCL": {"dnc"},
    "A": {"answering_machine"},
    "AA": {"answering_machine"},
    "AM": {"answering_machine"},
    "DROP": {"human_answered", "drop"},
    "PDROP": {"human_answered", "drop"},
    "TIMEOT": {"human_answered", "drop"},
    "B": set(),
    "NA": set(),
}

CALL = ("call.started", "call.answered", "call.ended", "call.dispositioned", "call.completed")


@dataclass
class Cell:
    """Everything that happened for one agent, team and campaign in one local hour."""

    counts: dict[str, Any] = field(default_factory=lambda: defaultdict(int))
    leads: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _latest(events: list[dict[str, Any]], name: str) -> Any:
    """The value of ``name`` in the latest event that has it (ties: the larger event id)."""
    having = [e for e in events if e.get(name) is not None]
    if not having:
        return None
    return max(having, key=lambda e: (datetime.fromisoformat(e["occurred_at"]), e["event_id"]))[
        name
    ]


def reference_cells(
    events: list[dict[str, Any]],
    zone: ZoneInfo,
    effective_seconds: int = 60,
    *,
    minutes: bool = False,
) -> dict[tuple[str, str, str, datetime], Cell]:
    """Base values per agent, team, campaign and local hour (``minutes``: local minute)."""
    unique = {e["event_id"]: e for e in events}.values()
    cells: dict[tuple[str, str, str, datetime], Cell] = defaultdict(Cell)

    def cell(at: datetime, agent: str, team: str, campaign: str) -> Cell:
        local = at.astimezone(zone).replace(second=0, microsecond=0)
        return cells[
            (agent or "", team or "", campaign or "", local if minutes else local.replace(minute=0))
        ]

    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in unique:
        kind = event["type"]
        if kind in CALL or kind == "survey.completed":
            calls[event["call_id"]].append(event)
        elif kind in ("sale.closed", "sale.cancelled", "payment.received"):
            orders[event["order_id"]].append(event)
        elif kind == "quote.given":
            target = cell(
                datetime.fromisoformat(event["occurred_at"]),
                event["agent_id"],
                event.get("team_id", ""),
                event.get("campaign_id", ""),
            )
            target.counts["quotes"] += 1
            target.leads["quoted"].add(event["lead_id"])
        elif kind == "lead.stage_changed" and event["stage"] in ("intent", "ready"):
            target = cell(
                datetime.fromisoformat(event["occurred_at"]),
                event["agent_id"],
                event.get("team_id", ""),
                event.get("campaign_id", ""),
            )
            target.leads["intent"].add(event["lead_id"])

    for call_events in calls.values():
        call_only = [e for e in call_events if e["type"] in CALL]
        survey = [e for e in call_events if e["type"] == "survey.completed"]
        if not call_only:
            continue
        start = min(datetime.fromisoformat(e["occurred_at"]) for e in call_events)
        target = cell(
            start,
            _latest(call_only, "agent_id"),
            _latest(call_only, "team_id"),
            _latest(call_only, "campaign_id"),
        )
        direction = _latest(call_only, "direction") or "outbound"
        answered_values = [
            (datetime.fromisoformat(e["occurred_at"]), e["event_id"], True)
            for e in call_only
            if e["type"] == "call.answered"
        ] + [
            (datetime.fromisoformat(e["occurred_at"]), e["event_id"], e["answered"])
            for e in call_only
            if e["type"] == "call.completed"
        ]
        answered = max(answered_values)[2] if answered_values else False
        disposition = _latest(call_only, "disposition")
        flags = CODE_FLAGS.get(disposition, set())
        by_machine = (_latest(call_only, "answered_by") or "human") == "machine"
        # The code is the last word: a machine code is a machine, a code a human answered a
        # human; a customer answered and no agent: a drop, a connect but never a contact.
        machine = "answering_machine" in flags or (
            answered and by_machine and "human_answered" not in flags
        )
        drop = not machine and (
            "drop" in flags or (answered and not _latest(call_only, "agent_id"))
        )
        human = not machine and (answered or drop)
        reached = human and not drop and _latest(call_only, "contact_reached") is not False
        ended = disposition is not None or any(
            e["type"] in ("call.ended", "call.completed") for e in call_only
        )
        talk = Decimal(str(_latest(call_only, "talk_seconds") or 0))
        wrap = Decimal(str(_latest(call_only, "wrap_seconds") or 0))
        lead = _latest(call_only, "lead_id")
        counts = target.counts
        counts["dials" if direction == "outbound" else "inbound_calls"] += 1
        counts["connects"] += human
        counts["inbound_connects"] += human and direction == "inbound"
        counts["drops"] += drop
        counts["machine_answers"] += machine
        counts["abandoned"] += direction == "inbound" and ended and not (human and not drop)
        counts["dnc_marks"] += "dnc" in flags
        counts["callbacks_scheduled"] += "callback" in flags
        counts["not_interested"] += "not_interested" in flags
        counts["contacts"] += reached
        counts["talk_seconds"] += talk
        counts["wrap_seconds"] += wrap
        if human and talk >= effective_seconds:
            counts["effective_calls"] += 1
            counts["effective_talk_seconds"] += talk
        if disposition is not None:
            counts[f"disposition:{disposition}"] += 1
        if survey:
            counts["csat_responses"] += 1
            counts["csat_sum"] += _latest(survey, "score")
        if lead is not None:
            if direction == "outbound":
                target.leads["dialed"].add(lead)
            if reached:
                target.leads["reached"].add(lead)

    for order_events in orders.values():
        if any(e["type"] == "sale.cancelled" for e in order_events):
            continue
        sales = [e for e in order_events if e["type"] == "sale.closed"]
        if sales:
            sale = max(sales, key=lambda e: (e["occurred_at"], e["event_id"]))
            target = cell(
                datetime.fromisoformat(sale["occurred_at"]),
                sale["agent_id"],
                sale.get("team_id", ""),
                sale.get("campaign_id", ""),
            )
            target.counts["sales"] += 1
            target.counts["revenue"] += Decimal(sale["amount"])
            target.counts["margin"] += Decimal(sale.get("margin") or 0)
            target.counts[f"{sale.get('customer_type', 'new')}_customer_sales"] += 1
            target.leads["won"].add(sale["lead_id"])
        for payment in (e for e in order_events if e["type"] == "payment.received"):
            target = cell(
                datetime.fromisoformat(payment["occurred_at"]),
                payment["agent_id"],
                payment.get("team_id", ""),
                payment.get("campaign_id", ""),
            )
            target.counts["collections"] += Decimal(payment["amount"])
    return cells


def bucket_of(granularity: str) -> Any:
    """The API's bucket label of a local hour, for ``rollup``: none, hour, day, week, month."""

    def of(hour: datetime) -> str | None:
        if granularity == "none":
            return None
        if granularity == "hour":
            return hour.isoformat()
        midnight = hour.replace(hour=0)
        if granularity == "week":
            midnight -= timedelta(days=midnight.weekday())
        elif granularity == "month":
            midnight = midnight.replace(day=1)
        return midnight.isoformat()

    return of


def rollup(
    cells: dict[tuple[str, str, str, datetime], Cell],
    group: tuple[str, ...],
    bucket_of: Any,
    start: datetime,
    end: datetime,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Base values per group (a subset of agent, team, campaign) and bucket."""
    position = {"agent": 0, "team": 1, "campaign": 2}
    counts: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    leads: dict[tuple[Any, ...], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for key, cell in cells.items():
        hour = key[3]
        if not start <= hour < end:
            continue
        row = (*tuple(key[position[g]] or None for g in group), bucket_of(hour))
        for name, value in cell.counts.items():
            counts[row][name] += value
        for fact, ids in cell.leads.items():
            leads[row][fact] |= ids
    out = {}
    for row in counts.keys() | leads.keys():
        values = dict(counts[row])
        for fact in ("dialed", "reached", "quoted", "won", "intent"):
            values[f"leads_{fact}"] = len(leads[row][fact])
        out[row] = values
    return out


def rounded(numerator: Any, denominator: Any, places: str) -> Decimal | None:
    """``numerator / denominator`` to ``places`` (half even, as the API rounds), null for 0."""
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(places))


def ratio(numerator: Any, denominator: Any, places: str = "0.000001") -> float | None:
    value = rounded(numerator, denominator, places)
    return None if value is None else float(value)


def money_ratio(numerator: Any, denominator: Any) -> Decimal | None:
    """A ratio in money, to the cent, as the API shows it."""
    return rounded(numerator, denominator, "0.01")


# Comparing the API's answer with the reference.


def keyed(rows: list[dict[str, Any]], group: tuple[str, ...]) -> dict[tuple[Any, ...], Any]:
    """The API's rows by the key ``rollup`` gives them: group values, then bucket."""
    return {(*(row[f"{g}_id"] for g in group), row.get("bucket")): row for row in rows}


def served_and_true(
    pipeline: Pipeline,
    cells: dict[tuple[str, str, str, datetime], Cell],
    group: tuple[str, ...],
    granularity: str,
    start: datetime,
    end: datetime,
) -> tuple[dict[tuple[Any, ...], dict[str, Any]], dict[tuple[Any, ...], Any]]:
    """One view of ``METRICS`` over ``[start, end)``: the reference's rows (from ``cells``)
    and the API's, both by ``keyed``'s key."""
    body = pipeline.metrics(
        metrics=METRICS,
        group_by=",".join(group) or "none",
        granularity=granularity,
        **{"from": start.isoformat(), "to": end.isoformat()},
    )
    return rollup(cells, group, bucket_of(granularity), start, end), keyed(body["rows"], group)


def value_pairs(row: dict[str, Any], truth: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(KPI, the API's value, the reference's) for every KPI of ``METRICS``."""
    pairs: list[tuple[str, Any, Any]] = []
    pairs += [(n, row[n], truth.get(n, 0)) for n in (*COUNTERS, *LEADS)]
    pairs += [(n, Decimal(row[n]), Decimal(truth.get(n, 0))) for n in MONEY]
    pairs += [
        (n, row[n], ratio(sum(truth.get(part, 0) for part in num), truth.get(den, 0)))
        for n, (num, den) in RATIOS.items()
    ]
    pairs += [
        (
            n,
            None if row[n] is None else Decimal(row[n]),
            money_ratio(truth.get(num, 0), truth.get(den, 0)),
        )
        for n, (num, den) in MONEY_RATIOS.items()
    ]
    dispositions = {k.split(":", 1)[1]: v for k, v in truth.items() if k.startswith("disposition:")}
    pairs.append(("dispositions", row["dispositions"], dispositions))
    return pairs


# Rates per hour logged in (kpis.md): the count over the time in any state but logged_out.
PER_LOGGED_IN_HOUR = {
    "dials_per_hour": "dials",
    "sales_per_hour": "sales",
    "contacts_per_hour": "contacts",
}


def logged_in_seconds(
    events: list[dict[str, Any]], agent: str, start: datetime, end: datetime
) -> Decimal:
    """Seconds of ``[start, end)`` the agent spent in a state other than logged_out: each
    ``agent.state_changed`` holds until the agent's next one (or ``end``)."""
    changes = sorted(
        (datetime.fromisoformat(e["occurred_at"]), e["event_id"], e["state"])
        for e in events
        if e["type"] == "agent.state_changed" and e.get("agent_id") == agent
    )
    total = Decimal(0)
    for i, (at, _, state) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else end
        if state == "logged_out":
            continue
        overlap = (min(until, end) - max(at, start)).total_seconds()
        if overlap > 0:
            total += Decimal(str(overlap))
    return total


def capacity(
    seconds: Decimal, *, dials: int, leads: int, connects: int, handle: Decimal
) -> float | None:
    """kpis.md's capacity, rounded as the API shows ratios: the time logged in over the
    handle time per connect (talk + wrap over connects) times the calls per lead."""
    if not (seconds and dials and leads and connects and handle):
        return None
    per_lead = (handle / connects) * (Decimal(dials) / leads)
    return float((seconds / per_lead).quantize(Decimal("0.000001")))


def per_logged_in_hour(count: int, seconds: Decimal) -> float | None:
    """A count per hour logged in, rounded as the API shows ratios."""
    if seconds == 0:
        return None
    return float((Decimal(count) * 3600 / seconds).quantize(Decimal("0.000001")))
