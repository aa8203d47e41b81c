"""Why a result target is behind, in one answer ordered by impact.

Three lenses on the same shortfall (kpis.md, the driver model):

* **Drivers** — the agent's drivers so far against the target-implied drivers: the rates of
  the reference (the median agent of its team; for a team, the median team) and the volume
  that would meet the expected-to-date at those rates (``expected / Π reference rates``).
  The reference product is then exactly the expected-to-date, so
  ``ln(actual / expected) = Σ ln(driver / implied driver)`` and each term is that driver's
  share of the gap.
* **Funnel accumulation** — the won leads the target still needs against what the leads now
  in C, B and A will bring at the conversion seen over the last four weeks.
* **Target realism** — the target against the best past period of the agent and of its team
  (the best agent-period of its teammates; for a team, the best team-period), over the last
  twelve periods of the same kind.

Each cause's impact is in the target's unit at the end of the period: a driver's share of
the projected shortfall (``value − projection``), the funnel's missing won leads times what
one won lead brings, the part of the target above the best past period.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from services.api.funnel.service import (
    check_result_target,
    current_stages,
    reached,
    window_before,
)
from services.api.metrics import queries
from services.api.metrics.periods import TimeRange
from services.api.metrics.queries import KeyTeams
from services.api.settings import ApiSettings
from services.api.targets.repository import Target
from services.api.targets.rules import amount, period_range, scope_filters, share
from services.api.targets.service import (
    actuals,
    own_actuals,
    pace_many,
    present_pacing,
    present_target,
    so_far,
)
from shared.kpis import (
    DRIVER_BASE_KEYS,
    DRIVERS,
    driver_values,
    median_driver,
    result_per_won_lead,
)
from shared.playbook import (
    FUNNEL,
    conversion_rates,
    driver_gaps,
    previous_period_start,
    reached_at_least,
)

HISTORY_PERIODS = 12
FUNNEL_QUESTION = "not enough leads accumulated in stages C/B?"
REALISM_QUESTION = "target set too high?"
_QUESTION = {d.key: d.question for d in DRIVERS}
_NAME = {d.key: d.name_zh for d in DRIVERS}


def drivers_for(kpi: str) -> tuple[str, ...]:
    """The drivers whose product is the result: won leads stop at close rate, revenue adds
    the ticket size, margin the margin rate (for sales, won leads stand for sales)."""
    keys = tuple(d.key for d in DRIVERS)
    if kpi in ("sales", "leads_won"):
        return keys[:4]
    return keys[:5] if kpi == "revenue" else keys


def _peers(subject: Target, roster: dict[str, str]) -> tuple[str, list[str]]:
    """Who the subject is compared with: its team's agents, or every team (in ``roster``,
    as the reading key knows the agents: a key limited to teams compares with those only)."""
    if subject.scope == "agent":
        team = roster.get(subject.scope_id, "")
        return "agent", sorted(a for a, t in roster.items() if t == team) or [subject.scope_id]
    if subject.scope == "team":
        return "team", sorted(set(roster.values()) | {subject.scope_id})
    return subject.scope, [subject.scope_id]


def diagnose(
    connection: Connection,
    settings: ApiSettings,
    subject: Target,
    as_of: datetime,
    *,
    key_teams: KeyTeams,
) -> dict[str, Any]:
    """The diagnosis as a key limited to ``key_teams`` may read it: every number counted
    from those teams' records, and peers from those teams only."""
    check_result_target(subject)
    kpi = subject.kpi
    roster = queries.agent_teams(connection, key_teams)
    paced = pace_many(connection, settings, [subject], as_of, roster, key_teams=key_teams)
    actual, pacing = paced[subject.target_id]
    rng = so_far(subject, settings, as_of)
    peer_scope, peer_ids = _peers(subject, roster)
    end_shortfall = max(
        pacing.value - (pacing.projection if pacing.projection is not None else actual),
        Decimal(0),
    )
    causes: list[dict[str, Any]] = []

    drivers = _driver_lens(
        connection, settings, subject, rng, pacing.expected, peer_scope, peer_ids, key_teams
    )
    if drivers["log_gap"] is not None and drivers["log_gap"] < 0:
        for row in drivers["rows"]:
            fraction = row.pop("_fraction")
            if fraction is not None and fraction > 0:
                causes.append(
                    {
                        "cause": row["driver"],
                        "kind": "driver",
                        "question": row["question"],
                        "impact": end_shortfall * Decimal(str(fraction)),
                        "detail": {
                            "value": row["value"],
                            "implied": row["implied"],
                            "share_of_gap": row["share_of_gap"],
                        },
                    }
                )
    else:
        for row in drivers["rows"]:
            row.pop("_fraction", None)

    funnel = _funnel_lens(connection, settings, subject, actual, pacing.value, as_of, key_teams)
    funnel_out = _shown(funnel)
    if funnel["missing_won_leads"] is not None and funnel["missing_won_leads"] > 0:
        causes.append(_lens_cause("funnel_accumulation", "funnel", FUNNEL_QUESTION, funnel))

    realism = _realism_lens(
        connection, settings, subject, pacing.value, peer_scope, peer_ids, key_teams
    )
    realism_out = _shown(realism)
    if realism["too_high"]:
        causes.append(_lens_cause("target_realism", "history", REALISM_QUESTION, realism))

    causes.sort(key=lambda c: (-c["impact"], c["cause"]))
    for rank, cause in enumerate(causes, 1):
        cause["rank"] = rank
        cause["impact"] = amount(kpi, cause["impact"])
    return {
        "target": present_target(subject, settings),
        "as_of": as_of.astimezone(settings.zone).isoformat(),
        "pacing": present_pacing(subject, pacing),
        "shortfall_at_period_end": amount(kpi, end_shortfall),
        "causes": [{"rank": c.pop("rank"), **c} for c in causes],
        "drivers": drivers,
        "funnel": funnel_out,
        "history": realism_out,
    }


def _shown(lens: dict[str, Any]) -> dict[str, Any]:
    """A lens as answered: without its ``_`` fields, which only order the causes."""
    return {k: v for k, v in lens.items() if not k.startswith("_")}


def _lens_cause(cause: str, kind: str, question: str, lens: dict[str, Any]) -> dict[str, Any]:
    return {
        "cause": cause,
        "kind": kind,
        "question": question,
        "impact": lens["_impact"],
        "detail": _shown(lens),
    }


def _driver_lens(
    connection: Connection,
    settings: ApiSettings,
    subject: Target,
    rng: TimeRange,
    expected: Decimal,
    peer_scope: str,
    peer_ids: Sequence[str],
    key_teams: KeyTeams,
) -> dict[str, Any]:
    keys = drivers_for(subject.kpi)
    with_margin = subject.kpi == "margin"
    own_base = own_actuals(
        connection, settings, subject, DRIVER_BASE_KEYS, rng, key_teams=key_teams
    )
    own = {k: v for k, v in driver_values(own_base, with_margin).items() if k in keys}
    if peer_scope in ("agent", "team"):
        bases = actuals(
            connection, settings, peer_scope, DRIVER_BASE_KEYS, rng, peer_ids, key_teams=key_teams
        )
        peers = [driver_values(b, with_margin) for b in bases.values()]
    else:
        peers = [driver_values(own_base, with_margin)]
    implied: dict[str, Decimal | None] = {
        k: median_driver([p.get(k) for p in peers]) for k in keys[1:]
    }
    rates_product: Decimal | None = Decimal(1)
    for key in keys[1:]:
        value = implied[key]
        rates_product = None if value is None or rates_product is None else rates_product * value
    implied[keys[0]] = expected / rates_product if rates_product and expected else None
    implied = {k: implied[k] for k in keys}
    log_gap, gaps = driver_gaps(own, implied)
    rows = [
        {
            "driver": gap.driver,
            "name_zh": _NAME[gap.driver],
            "value": _driver_number(gap.driver, subject.kpi, gap.value),
            "implied": _driver_number(gap.driver, subject.kpi, gap.reference),
            "log_share": None if gap.log_share is None else round(gap.log_share, 6),
            "share_of_gap": None if gap.share_of_gap is None else round(gap.share_of_gap, 6),
            "question": _QUESTION[gap.driver],
            "_fraction": gap.share_of_gap,
        }
        for gap in gaps
    ]
    return {
        "reference": (
            f"median {peer_scope} of {len(peer_ids)}"
            if peer_scope in ("agent", "team")
            else "own rates"
        ),
        "log_gap": None if log_gap is None else round(log_gap, 6),
        "rows": rows,
    }


def _driver_number(key: str, kpi: str, value: Decimal | None) -> Any:
    if value is None:
        return None
    if key == "avg_revenue_per_won_lead":
        return amount("revenue", value)
    if key == "leads_dialed":
        return round(float(value), 2)
    return round(float(value), 6)


def _funnel_lens(
    connection: Connection,
    settings: ApiSettings,
    subject: Target,
    actual: Decimal,
    value: Decimal,
    as_of: datetime,
    key_teams: KeyTeams,
) -> dict[str, Any]:
    filters = scope_filters(subject.scope, [subject.scope_id], key_teams=key_teams)
    now = current_stages(connection, filters, (), as_of).get((), dict.fromkeys(FUNNEL, 0))
    window = window_before(as_of)
    rates = conversion_rates(reached(connection, window, filters, ()).get((), reached_at_least([])))
    base = own_actuals(
        connection,
        settings,
        subject,
        sorted({subject.kpi, "leads_won"}),
        window,
        key_teams=key_teams,
    )
    per_won = result_per_won_lead(subject.kpi, base)
    to_won = {
        stage: _product(rates, ("acknowledged", "intent", "ready")[i:])
        for i, stage in enumerate(("acknowledged", "intent", "ready"))
    }
    expected_won: Decimal | None = Decimal(0)
    for stage, rate in to_won.items():
        if rate is None:
            if now[stage]:
                expected_won = None
            continue
        if expected_won is not None:
            expected_won += now[stage] * rate
    remaining = max(value - actual, Decimal(0))
    needed = remaining / per_won if per_won else None
    missing = needed - expected_won if needed is not None and expected_won is not None else None
    return {
        "leads_now": {s: now[s] for s in ("acknowledged", "intent", "ready")},
        "conversion_to_won": {s: share(r) for s, r in to_won.items()},
        "expected_won_leads": share(expected_won),
        "target_left": amount(subject.kpi, remaining),
        "result_per_won_lead": amount(subject.kpi, per_won),
        "won_leads_needed": share(needed),
        "missing_won_leads": share(missing),
        "_impact": (missing or Decimal(0)) * (per_won or Decimal(0)),
    }


def _product(rates: dict[str, Decimal | None], stages: Sequence[str]) -> Decimal | None:
    product = Decimal(1)
    for stage in stages:
        rate = rates.get(stage)
        if rate is None:
            return None
        product *= rate
    return product


def _realism_lens(
    connection: Connection,
    settings: ApiSettings,
    subject: Target,
    value: Decimal,
    peer_scope: str,
    peer_ids: Sequence[str],
    key_teams: KeyTeams,
) -> dict[str, Any]:
    own_best: tuple[Decimal, str] | None = None
    peer_best: tuple[Decimal, str, str] | None = None
    start = subject.period_start
    for _ in range(HISTORY_PERIODS):
        start = previous_period_start(subject.period, start)
        rng = period_range(settings, subject.period, start)
        # Peers are the team's agents, every team, or (campaign, floor) the target's own scope.
        results = actuals(
            connection, settings, peer_scope, [subject.kpi], rng, peer_ids, key_teams=key_teams
        )
        for scope_id, values in results.items():
            result = values.get(subject.kpi)
            if result is None or result <= 0:
                continue
            if scope_id == subject.scope_id and (own_best is None or result > own_best[0]):
                own_best = (result, start.isoformat())
            if peer_best is None or result > peer_best[0]:
                peer_best = (result, start.isoformat(), scope_id)
    too_high = own_best is not None and peer_best is not None and value > peer_best[0]
    ceiling = max(own_best[0] if own_best else Decimal(0), peer_best[0] if peer_best else 0)
    return {
        "periods_looked_at": HISTORY_PERIODS,
        "own_best": (
            {"value": amount(subject.kpi, own_best[0]), "period_start": own_best[1]}
            if own_best
            else None
        ),
        "peer_best": (
            {
                "value": amount(subject.kpi, peer_best[0]),
                "period_start": peer_best[1],
                f"{peer_scope}_id": peer_best[2] or None,
            }
            if peer_best
            else None
        ),
        "too_high": too_high,
        "_impact": value - ceiling if too_high else Decimal(0),
    }
