"""The sales funnel: leads now in each stage, stage-to-next conversion over a period, the
funnel's shape, and the backward plan of a result target, week by week.

A lead's stage is its latest ``lead.stage_changed`` unless a sale not cancelled came later
(then it is won); ``lost`` takes it out of the funnel. The lead belongs to the agent (and
team, and campaign) of that latest record. Conversion over a period counts the leads that
reached at least each stage in it (``shared.playbook.reached_at_least``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from services.api.metrics import queries
from services.api.metrics.periods import TimeRange
from services.api.metrics.queries import Filters, KeyTeams
from services.api.settings import ApiSettings
from services.api.targets.repository import Target, calendar_for_team, calendars, value_changes
from services.api.targets.rules import amount, scope_filters, share
from services.api.targets.service import own_actuals, team_of
from shared.errors import InvalidInput
from shared.kpis import result_per_won_lead
from shared.models import lead_fact, lead_stage, stage_change
from shared.playbook import (
    FUNNEL,
    LOST,
    RANK,
    RESULT_KPIS,
    STAGES,
    WON,
    FunnelShape,
    PlanWeek,
    classify_shape,
    conversion_rates,
    plan_weeks,
    reached_at_least,
    value_at,
    whole_leads,
    working_seconds,
)
from shared.timeutil import as_utc, local_midnight, week_start

# Conversion rates for a plan or a shape: those seen over the four weeks before.
RATE_WINDOW = timedelta(days=28)

Owner = tuple[str, str, str]  # agent, team, campaign


@dataclass(frozen=True, slots=True)
class FunnelRow:
    key: tuple[str | None, ...]
    now: dict[str, int]
    reached: dict[str, int]
    rates: dict[str, Decimal | None]
    shape: FunnelShape


def _group(owner: Owner, group_by: Sequence[str]) -> tuple[str | None, ...]:
    return tuple((owner[0] if g == "agent" else owner[1]) or None for g in group_by)


def current_stages(
    connection: Connection, filters: Filters, group_by: Sequence[str], as_of: datetime | None
) -> dict[tuple[str | None, ...], dict[str, int]]:
    """Leads in each stage now (or as they stood at ``as_of``), per group."""
    # Each lead's latest record, with the team that record named (a key limited to teams
    # counts a lead when that team is one of them).
    latest: dict[str, tuple[datetime, int, str, str, Owner, str]] = {}

    def offer(
        lead: str, at: datetime, order: int, tiebreak: str, stage: str, owner: Owner, own: str
    ) -> None:
        candidate = (as_utc(at), order, tiebreak, stage, owner, own)
        known = latest.get(lead)
        if known is None or candidate[:3] > known[:3]:
            latest[lead] = candidate

    table = lead_stage if as_of is None else stage_change
    joined, columns = queries.scoped(table)
    stmt = select(
        table.c.lead_id,
        table.c.stage,
        table.c.occurred_at,
        table.c.event_id,
        table.c.agent_id,
        columns["team"].label("team"),
        table.c.team_id.label("own_team"),
        table.c.campaign_id,
    ).select_from(joined)
    if as_of is not None:
        stmt = stmt.where(table.c.occurred_at < as_of)
    for row in connection.execute(stmt):
        owner = (row.agent_id, row.team, row.campaign_id)
        offer(row.lead_id, row.occurred_at, 0, row.event_id, row.stage, owner, row.own_team)
    joined, columns = queries.scoped(lead_fact)
    won = (
        select(
            lead_fact.c.lead_id,
            lead_fact.c.occurred_at,
            lead_fact.c.source,
            lead_fact.c.agent_id,
            columns["team"].label("team"),
            lead_fact.c.team_id.label("own_team"),
            lead_fact.c.campaign_id,
        )
        .select_from(joined)
        .where(lead_fact.c.fact == "won")
    )
    if as_of is not None:
        won = won.where(lead_fact.c.occurred_at < as_of)
    for sale in connection.execute(won):
        # At the same instant a sale outranks a stage change.
        owner = (sale.agent_id, sale.team, sale.campaign_id)
        offer(sale.lead_id, sale.occurred_at, 1, sale.source, WON, owner, sale.own_team)
    out: dict[tuple[str | None, ...], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(FUNNEL, 0)
    )
    key_teams = filters.key_teams
    for _at, _order, _tiebreak, stage, owner, own in latest.values():
        if stage == LOST or not filters.admits(owner):
            continue
        if key_teams is not None and own not in key_teams:
            continue
        out[_group(owner, group_by)][stage] += 1
    return dict(out)


def reached(
    connection: Connection, rng: TimeRange, filters: Filters, group_by: Sequence[str]
) -> dict[tuple[str | None, ...], dict[str, int]]:
    """Leads that reached at least each stage in ``rng``, per group (the group of each
    stage change or sale)."""
    highest: dict[tuple[tuple[str | None, ...], str], int] = {}

    def offer(group: tuple[str | None, ...], lead: str, stage: str) -> None:
        rank = RANK.get(stage)
        if rank is not None and rank > highest.get((group, lead), -1):
            highest[(group, lead)] = rank

    joined, columns = queries.scoped(stage_change)
    rows = connection.execute(
        select(
            stage_change.c.lead_id,
            stage_change.c.stage,
            stage_change.c.agent_id,
            columns["team"].label("team"),
        )
        .select_from(joined)
        .where(
            stage_change.c.occurred_at >= rng.start,
            stage_change.c.occurred_at < rng.end,
            *queries.filter_conditions(columns, filters),
        )
    )
    for row in rows:
        offer(_group((row.agent_id, row.team, ""), group_by), row.lead_id, row.stage)
    joined, columns = queries.scoped(lead_fact)
    rows = connection.execute(
        select(lead_fact.c.lead_id, lead_fact.c.agent_id, columns["team"].label("team"))
        .select_from(joined)
        .where(
            lead_fact.c.fact == "won",
            lead_fact.c.occurred_at >= rng.start,
            lead_fact.c.occurred_at < rng.end,
            *queries.filter_conditions(columns, filters),
        )
    )
    for row in rows:
        offer(_group((row.agent_id, row.team, ""), group_by), row.lead_id, WON)
    per_group: dict[tuple[str | None, ...], list[str]] = defaultdict(list)
    for (group, _lead), rank in highest.items():
        per_group[group].append(FUNNEL[rank])
    return {group: reached_at_least(stages) for group, stages in per_group.items()}


def funnel_rows(
    connection: Connection,
    filters: Filters,
    group_by: Sequence[str],
    rates_range: TimeRange,
    as_of: datetime | None,
) -> list[FunnelRow]:
    now = current_stages(connection, filters, group_by, as_of)
    seen = reached(connection, rates_range, filters, group_by)
    empty = reached_at_least([])
    rows = []
    for key in sorted(set(now) | set(seen), key=lambda k: tuple(v or "" for v in k)):
        counts = now.get(key, dict.fromkeys(FUNNEL, 0))
        at_least = seen.get(key, empty)
        rates = conversion_rates(at_least)
        rows.append(FunnelRow(key, counts, at_least, rates, classify_shape(counts, rates)))
    if not rows and not group_by:
        rates = conversion_rates(empty)
        counts = dict.fromkeys(FUNNEL, 0)
        rows.append(FunnelRow((), counts, empty, rates, classify_shape(counts, rates)))
    return rows


def present_rates(rates: dict[str, Decimal | None]) -> dict[str, float | None]:
    return {f"{stage}_to_{FUNNEL[i + 1]}": share(rates[stage]) for i, stage in enumerate(STAGES)}


def present_row(row: FunnelRow, group_by: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {f"{g}_id": v for g, v in zip(group_by, row.key, strict=True)}
    out["now"] = {stage: row.now[stage] for stage in STAGES}
    out["won"] = row.now[WON]
    out["reached"] = row.reached
    out["conversion"] = present_rates(row.rates)
    out["shape"] = {
        "shape": row.shape.shape,
        "findings": list(row.shape.findings),
        "checks": {k: share(v) for k, v in row.shape.checks.items()},
    }
    return out


# ---------------------------------------------------------------------------------------------
# The backward plan of a target


def check_result_target(subject: Target) -> None:
    if subject.kpi not in RESULT_KPIS:
        raise InvalidInput(
            f"target {subject.target_id} is on {subject.kpi}; the backward plan and the "
            f"diagnosis work back from a result: {', '.join(RESULT_KPIS)}"
        )


def window_before(moment: datetime) -> TimeRange:
    return TimeRange(moment - RATE_WINDOW, moment)


def period_weeks(subject: Target, settings: ApiSettings) -> list[TimeRange]:
    rng = subject.range(settings)
    first = week_start(subject.period_start, settings.week_start)
    weeks = []
    day = first
    while local_midnight(day, settings.zone) < rng.end:
        start = max(local_midnight(day, settings.zone), rng.start)
        end = min(local_midnight(day + timedelta(days=7), settings.zone), rng.end)
        weeks.append(TimeRange(start, end))
        day += timedelta(days=7)
    return weeks


def target_plan(
    connection: Connection,
    settings: ApiSettings,
    subject: Target,
    as_of: datetime,
    *,
    key_teams: KeyTeams,
) -> dict[str, Any]:
    """Leads needed per stage per week to meet a result target, each started week planned
    at its start from the conversion seen over the four weeks before it, with its actuals
    (counted from the records of ``key_teams`` for a key limited to those)."""
    check_result_target(subject)
    kpi = subject.kpi
    filters = scope_filters(subject.scope, [subject.scope_id], key_teams=key_teams)
    roster = queries.agent_teams(connection, key_teams)
    calendar = calendar_for_team(calendars(connection), team_of(subject, roster))
    changes = value_changes(connection, [subject])[subject.target_id]
    rng = subject.range(settings)
    weeks = [
        w
        for w in period_weeks(subject, settings)
        if working_seconds(calendar, settings.zone, w.start, w.end) > 0
    ]
    current = next((i for i, w in enumerate(weeks) if as_of < w.end), None)
    base_keys = sorted({kpi, "leads_won"})
    inputs: list[PlanWeek] = []
    used: list[dict[str, Any]] = []
    for index, week in enumerate(weeks):
        known = current is None or index <= current
        if known:
            done = own_actuals(
                connection,
                settings,
                subject,
                [kpi],
                TimeRange(rng.start, week.start),
                key_teams=key_teams,
            )
            window = window_before(week.start)
            seen = reached(connection, window, filters, ()).get((), reached_at_least([]))
            rates = conversion_rates(seen)
            per_won = result_per_won_lead(
                kpi,
                own_actuals(connection, settings, subject, base_keys, window, key_teams=key_teams),
            )
            used.append({"rates": rates, "result_per_won": per_won})
        else:
            done, rates, per_won = {}, dict.fromkeys(STAGES), None
            used.append({})
        inputs.append(
            PlanWeek(
                week.start,
                week.end,
                working_seconds(calendar, settings.zone, week.start, week.end),
                value_at(changes, week.start),
                done.get(kpi) or Decimal(0),
                rates,
                per_won,
            )
        )
    plans = plan_weeks(inputs, current)
    out_weeks = []
    for index, (week, plan) in enumerate(zip(weeks, plans, strict=True)):
        state = "done" if week.end <= as_of else "current" if week.start <= as_of else "planned"
        actual = None
        if state != "planned":
            upto = TimeRange(week.start, min(week.end, max(as_of, week.start)))
            result = own_actuals(
                connection, settings, subject, [kpi], upto, key_teams=key_teams
            ).get(kpi)
            seen = reached(connection, upto, filters, ()).get((), reached_at_least([]))
            actual = {"result": amount(kpi, result or Decimal(0)), "leads": seen}
        basis = used[index] if used[index] else used[current or 0]
        out_weeks.append(
            {
                "week_start": week.start.astimezone(settings.zone).isoformat(),
                "week_end": week.end.astimezone(settings.zone).isoformat(),
                "state": state,
                "working_hours": round(inputs[index].working_seconds / 3600, 2),
                "planned_at": plan.planned_at.astimezone(settings.zone).isoformat(),
                "plan": {
                    "target_left": amount(kpi, plan.remaining),
                    "share_of_remaining_time": share(plan.share),
                    "result": amount(kpi, plan.result_needed),
                    "leads": whole_leads(plan.needed),
                },
                "rates_used": present_rates(basis.get("rates") or dict.fromkeys(STAGES)),
                "result_per_won_lead": amount(kpi, basis.get("result_per_won")),
                "actual": actual,
            }
        )
    return {
        "target_id": subject.target_id,
        "kpi": kpi,
        "scope": subject.scope,
        "scope_id": subject.scope_id or None,
        "as_of": as_of.astimezone(settings.zone).isoformat(),
        "rates_window_days": RATE_WINDOW.days,
        "weeks": out_weeks,
    }
