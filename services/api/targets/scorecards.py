"""Weighted KPI scorecards for the monthly, quarterly or yearly review."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection

from services.api.metrics import queries
from services.api.metrics.periods import TimeRange
from services.api.metrics.queries import KeyTeams
from services.api.settings import ApiSettings
from services.api.targets.repository import find_targets
from services.api.targets.rules import amount, share
from services.api.targets.service import actuals
from shared.playbook import (
    PeriodKind,
    ScoreLine,
    accrues,
    period_end,
    scorecard,
)
from shared.timeutil import floor_minute, local_midnight


def scorecards(
    connection: Connection,
    settings: ApiSettings,
    scope: Literal["agent", "team"],
    period: PeriodKind,
    start: date,
    weights: dict[str, Decimal],
    cap: Decimal,
    as_of: datetime,
    teams: Sequence[str],
    *,
    key_teams: KeyTeams,
) -> list[dict[str, Any]]:
    """Each agent's (or team's) weighted scorecard for one period, best first; ``teams``
    narrows them, and a key limited to teams reads only what those teams' records hold."""
    end = period_end(period, start)
    rng = TimeRange(
        local_midnight(start, settings.zone),
        min(
            local_midnight(end, settings.zone),
            max(floor_minute(as_of), local_midnight(start, settings.zone)),
        ),
    )
    subjects = find_targets(
        connection, scope=scope, kpis=list(weights), period=period, period_start=start
    )
    roster = queries.agent_teams(connection, key_teams)

    def team(scope_id: str) -> str:
        return scope_id if scope == "team" else roster.get(scope_id, "")

    goals: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for subject in subjects:
        goals[subject.scope_id][subject.kpi] = subject.value
    results = actuals(connection, settings, scope, list(weights), rng, (), key_teams=key_teams)
    # Those under review: every agent (or team) with a target for one of the weighted KPIs.
    allowed = set(teams) if teams else key_teams
    ids = sorted(i for i in goals if i and (allowed is None or team(i) in allowed))
    rows = []
    for scope_id in ids:
        lines = [
            ScoreLine(kpi, weight, _actual(kpi, results.get(scope_id)), goals[scope_id].get(kpi))
            for kpi, weight in weights.items()
        ]
        score, scored = scorecard(lines, cap)
        row: dict[str, Any] = {f"{scope}_id": scope_id}
        if scope == "agent":
            row["team_id"] = roster.get(scope_id)
        row["kpis"] = [
            {
                "kpi": line.kpi,
                "weight": float(line.weight),
                "actual": amount(line.kpi, line.actual),
                "target": amount(line.kpi, line.target),
                "attainment": share(line.attainment),
                "points": share(line.points),
            }
            for line in scored
        ]
        row["score"] = share(score)
        row["missing_targets"] = [line.kpi for line in scored if line.target is None]
        rows.append(row)
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0), r[f"{scope}_id"]))
    rank, previous = 0, object()
    for position, row in enumerate(rows, 1):
        if row["score"] is None:
            row["rank"] = None
            continue
        if row["score"] != previous:
            rank, previous = position, row["score"]
        row["rank"] = rank
    return rows


def _actual(kpi: str, values: dict[str, Decimal | None] | None) -> Decimal | None:
    """A KPI of one scope; a count or sum with no data is 0, a ratio without data none."""
    value = (values or {}).get(kpi)
    if value is None and accrues(kpi):
        return Decimal(0)
    return value
