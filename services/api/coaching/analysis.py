"""Coaching analysis: the performance-driver model against a reference, and the best time
to call.

The driver model is exact: the result is the product of the drivers, so
``ln(result / reference) = Σ ln(driver / reference driver)`` and each term is that
driver's share of the gap (``kpis.md``).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, and_, func, select

from services.api.metrics import queries
from services.api.metrics.periods import Granularity, TimeRange
from services.api.metrics.queries import Filters, Query
from services.api.metrics.service import MetricsService, money_text
from services.api.settings import ApiSettings
from shared.errors import InvalidInput, NotFound
from shared.kpis import (
    DRIVER_BASE_KEYS,
    DRIVERS,
    RATIO_BY_KEY,
    driver_result,
    driver_values,
    log_ratio,
    median_driver,
    ratio_value,
)
from shared.models import kpi_minute, lead_fact
from shared.timeutil import as_utc

CENTS = Decimal("0.01")
REFERENCES = ("team_median", "previous_period", "target")
_DRIVER = {d.key: d for d in DRIVERS}


def _base(
    connection: Connection, settings: ApiSettings, query: Query
) -> dict[tuple[Any, ...], dict[str, Any]]:
    return MetricsService(settings).base_values(connection, set(DRIVER_BASE_KEYS), query, False)


def _scope_query(
    settings: ApiSettings, rng: TimeRange, filters: Filters, group_by: tuple[str, ...] = ()
) -> Query:
    return Query(group_by, Granularity.none, rng, filters, settings.zone, settings.week_start)


def driver_model(
    connection: Connection,
    settings: ApiSettings,
    rng: TimeRange,
    *,
    agent_id: str | None,
    team_id: str | None,
    reference: str,
    targets: dict[str, Decimal],
    key_teams: queries.KeyTeams,
) -> dict[str, Any]:
    """``key_teams``: the reading key's teams, which bound the scope and its peers alike."""
    if (agent_id is None) == (team_id is None):
        raise InvalidInput("give exactly one of agent_id and team_id")
    if reference not in REFERENCES:
        raise InvalidInput(f"reference must be one of {', '.join(REFERENCES)}")
    filters = (
        Filters(agent_ids=(agent_id,), key_teams=key_teams)
        if agent_id is not None
        else Filters(team_ids=(team_id or "",), key_teams=key_teams)
    )
    own = _base(connection, settings, _scope_query(settings, rng, filters)).get((None,), {})
    if not own and reference != "target":
        raise NotFound("no calls, quotes or sales for this scope in the period")

    peers: list[dict[str, Any]] = []
    reference_base: dict[str, Any] | None = None
    reference_scope: dict[str, Any] = {}
    if reference == "previous_period":
        previous = _scope_query(settings, rng.previous(), filters)
        reference_base = _base(connection, settings, previous).get((None,), {})
        reference_scope = {
            "from": rng.previous().start.astimezone(settings.zone).isoformat(),
            "to": rng.previous().end.astimezone(settings.zone).isoformat(),
        }
    elif reference == "team_median":
        if agent_id:
            team = queries.agent_teams(connection, key_teams).get(agent_id) or team_id
            if team is None:
                raise InvalidInput(f"agent {agent_id} has no team to compare with")
            peers_of_team = Filters(team_ids=(team,), key_teams=key_teams)
            rows = _base(
                connection, settings, _scope_query(settings, rng, peers_of_team, ("agent",))
            )
            reference_scope = {"team_id": team, "agents": len(rows)}
        else:
            # Every team the key reads: for a key limited to teams, those teams only.
            every_team = Filters(key_teams=key_teams)
            rows = _base(connection, settings, _scope_query(settings, rng, every_team, ("team",)))
            reference_scope = {"teams": len(rows)}
        peers = [values for key, values in rows.items() if key[0] is not None]

    with_margin = Decimal(own.get("margin") or 0) != 0
    if reference_base is not None:
        with_margin = with_margin and Decimal(reference_base.get("margin") or 0) != 0
    values = driver_values(own, with_margin)
    if reference == "target":
        missing = [k for k in values if k not in targets]
        if missing:
            raise InvalidInput(
                "reference=target needs a target for every driver: "
                + ", ".join(f"target_{k}" for k in missing)
            )
        reference_values: dict[str, Decimal | None] = {k: targets[k] for k in values}
    elif reference_base is not None:
        reference_values = driver_values(reference_base, with_margin)
    else:
        per_peer = [driver_values(p, with_margin) for p in peers]
        reference_values = {k: median_driver([p[k] for p in per_peer]) for k in values}

    result = driver_result(values)
    reference_result = driver_result(reference_values)
    log_gap = log_ratio(result, reference_result)
    drivers = []
    for key, value in values.items():
        ref = reference_values.get(key)
        share = log_ratio(value, ref)
        drivers.append(
            {
                "driver": key,
                "name_zh": _DRIVER[key].name_zh,
                "value": _number(key, value),
                "reference": _number(key, ref),
                "log_share": None if share is None else round(share, 6),
                "share_of_gap": (
                    round(share / log_gap, 6) if share is not None and log_gap else None
                ),
                "question": _DRIVER[key].question,
            }
        )
    costly = sorted(
        (d for d in drivers if d["log_share"] is not None), key=lambda d: d["log_share"]
    )
    return {
        "scope": {"agent_id": agent_id} if agent_id is not None else {"team_id": team_id},
        "from": rng.start.astimezone(settings.zone).isoformat(),
        "to": rng.end.astimezone(settings.zone).isoformat(),
        "reference": {"kind": reference, **reference_scope},
        "result_kind": "margin" if with_margin else "revenue",
        "result": _money(result),
        "reference_result": _money(reference_result),
        "log_gap": None if log_gap is None else round(log_gap, 6),
        "drivers": drivers,
        "ranked_by_cost": [d["driver"] for d in costly if d["log_share"] < 0],
    }


def _money(value: Decimal | None) -> str | None:
    return None if value is None else money_text(value.quantize(CENTS, rounding=ROUND_HALF_UP))


def _number(key: str, value: Decimal | None) -> Any:
    if value is None:
        return None
    if key == "avg_revenue_per_won_lead":
        return _money(value)
    if key == "leads_dialed":
        return int(value)
    return round(float(value), 6)


def best_time_to_call(
    connection: Connection, settings: ApiSettings, rng: TimeRange, filters: Filters
) -> list[dict[str, Any]]:
    """Connect and contact rate per local weekday and hour, over the range."""
    query = _scope_query(settings, rng, filters)
    joined, columns = queries.scoped(kpi_minute)
    counters = connection.execute(
        select(
            kpi_minute.c.hour,
            func.sum(kpi_minute.c.dials).label("dials"),
            func.sum(kpi_minute.c.connects).label("connects"),
        )
        .select_from(joined)
        .where(
            kpi_minute.c.bucket >= rng.start,
            kpi_minute.c.bucket < rng.end,
            *queries.filter_conditions(columns, query.filters),
        )
        .group_by(kpi_minute.c.hour)
    )
    cells: dict[tuple[int, int], dict[str, Any]] = defaultdict(
        lambda: {"dials": 0, "connects": 0, "dialed": set(), "reached": set()}
    )
    for row in counters:
        local = as_utc(row.hour).astimezone(settings.zone)
        cell = cells[(local.isoweekday(), local.hour)]
        cell["dials"] += int(row.dials or 0)
        cell["connects"] += int(row.connects or 0)
    joined, columns = queries.scoped(lead_fact)
    leads = connection.execute(
        select(lead_fact.c.hour, lead_fact.c.fact, lead_fact.c.lead_id)
        .select_from(joined)
        .where(
            and_(
                lead_fact.c.occurred_at >= rng.start,
                lead_fact.c.occurred_at < rng.end,
                lead_fact.c.fact.in_(("dialed", "reached")),
            ),
            *queries.filter_conditions(columns, query.filters),
        )
        .distinct()
    )
    for row in leads:
        local = as_utc(row.hour).astimezone(settings.zone)
        cells[(local.isoweekday(), local.hour)][row.fact].add(row.lead_id)
    out = []
    for (weekday, hour), cell in sorted(cells.items()):
        dialed, reached = len(cell["dialed"]), len(cell["reached"])
        counts = {"dials": cell["dials"], "connects": cell["connects"]}
        counts |= {"leads_dialed": dialed, "leads_reached": reached}
        out.append(
            {
                "weekday": weekday,
                "hour": hour,
                "dials": cell["dials"],
                "connects": cell["connects"],
                "leads_dialed": dialed,
                "leads_reached": reached,
                "connect_rate": _rate("connect_rate", counts),
                "contact_rate": _rate("contact_rate", counts),
            }
        )
    return out


def _rate(key: str, base: dict[str, int]) -> float | None:
    value = ratio_value(RATIO_BY_KEY[key], base)
    return None if value is None else float(value)
