"""What a manager reads from targets: pacing, the attainment ranking and quota splits, and
which targets a key may read.

The formulas are those of ``shared/playbook.py``; this module feeds them the numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, select

from services.api.metrics import queries
from services.api.metrics.periods import Granularity, TimeRange
from services.api.metrics.queries import KeyTeams, Query
from services.api.metrics.service import MetricsService
from services.api.settings import ApiSettings
from services.api.targets.repository import (
    Target,
    as_target,
    calendar_for_team,
    calendars,
    change_target,
    create_target,
    find_targets,
    get_target,
    value_changes,
)
from services.api.targets.rules import (
    SCOPE_FILTER,
    amount,
    places,
    present_value,
    scope_filters,
    share,
)
from services.api.targets.schemas import NewTarget, SplitRequest, TargetUpdate
from shared.auth import Principal
from shared.errors import InvalidInput, NotFound
from shared.kpis import (
    RATIO_BY_KEY,
)
from shared.models import target
from shared.playbook import (
    Pacing,
    PeriodKind,
    pacing,
    previous_period_start,
    split_quota,
    weights_from_results,
)
from shared.timeutil import as_utc, floor_minute, local_midnight


def present_target(target_row: Target, settings: ApiSettings) -> dict[str, Any]:
    rng = target_row.range(settings)
    return {
        "target_id": target_row.target_id,
        "scope": target_row.scope,
        "scope_id": target_row.scope_id or None,
        "kpi": target_row.kpi,
        "period": target_row.period.value,
        "period_start": target_row.period_start.isoformat(),
        "from": rng.start.astimezone(settings.zone).isoformat(),
        "to": rng.end.astimezone(settings.zone).isoformat(),
        "value": present_value(target_row.kpi, target_row.value),
        "created_at": as_utc(target_row.created_at).astimezone(settings.zone).isoformat(),
        "updated_at": as_utc(target_row.updated_at).astimezone(settings.zone).isoformat(),
        "deleted_at": (
            as_utc(target_row.deleted_at).astimezone(settings.zone).isoformat()
            if target_row.deleted_at
            else None
        ),
    }


def team_of(subject: Target, roster: dict[str, str]) -> str:
    """The team of a target: its own, or its agent's in ``roster``
    (``queries.agent_teams``, as the reading key knows the agents); none for the others."""
    if subject.scope == "team":
        return subject.scope_id
    if subject.scope == "agent":
        return roster.get(subject.scope_id, "")
    return ""


def readable(reader: Principal, team: str) -> bool:
    """A key limited to some teams reads only the targets of those teams and of the agents
    with records in them."""
    return reader.team_ids is None or team in reader.team_ids


def get_readable_target(
    connection: Connection, reader: Principal, target_id: int, *, deleted: bool = False
) -> Target:
    """A target the key may read; another team's answers exactly as one that does not exist."""
    row = connection.execute(select(target).where(target.c.target_id == target_id)).first()
    if row is not None and reader.team_ids is not None:
        roster = queries.agent_teams(connection, reader.team_ids)
        if not readable(reader, team_of(as_target(row), roster)):
            row = None
    if row is None:
        raise NotFound(f"no target {target_id}")
    return get_target(connection, target_id, deleted=deleted)


def _as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError):
        return None


def actuals(
    connection: Connection,
    settings: ApiSettings,
    scope: str,
    kpis: Sequence[str],
    rng: TimeRange,
    ids: Sequence[str],
    *,
    key_teams: KeyTeams,
) -> dict[str, dict[str, Decimal | None]]:
    """Each scope id's KPIs over ``rng`` (the floor's under the id ``""``), counted from
    the records of ``key_teams`` only when the reading key is limited to those."""
    if rng.end <= rng.start:
        return {}
    filters = scope_filters(scope, ids, key_teams=key_teams)
    group = (scope,) if scope in SCOPE_FILTER else ()
    query = Query(group, Granularity.none, rng, filters, settings.zone, settings.week_start)
    out: dict[str, dict[str, Decimal | None]] = {}
    for row in MetricsService(settings).metric_rows(connection, list(kpis), query):
        key = row.key[0] if group else ""
        if key is None:
            continue
        out[key] = {k: _as_decimal(row.values.get(k)) for k in kpis}
    return out


def so_far(subject: Target, settings: ApiSettings, as_of: datetime) -> TimeRange:
    rng = subject.range(settings)
    return TimeRange(rng.start, min(max(floor_minute(as_of), rng.start), rng.end))


def own_actuals(
    connection: Connection,
    settings: ApiSettings,
    subject: Target,
    kpis: Sequence[str],
    rng: TimeRange,
    *,
    key_teams: KeyTeams,
) -> dict[str, Decimal | None]:
    """``kpis`` of the target's own scope over ``rng``."""
    found = actuals(
        connection,
        settings,
        subject.scope,
        kpis,
        rng,
        [subject.scope_id] if subject.scope_id else [],
        key_teams=key_teams,
    )
    return found.get(subject.scope_id, {})


def pace_many(
    connection: Connection,
    settings: ApiSettings,
    subjects: Sequence[Target],
    as_of: datetime,
    roster: dict[str, str] | None = None,
    *,
    key_teams: KeyTeams,
) -> dict[int, tuple[Decimal, Pacing]]:
    """Pacing of several targets; their actuals are read once per scope, KPI and period.
    ``roster`` (agent to team, ``queries.agent_teams`` for the same ``key_teams``) is read
    here unless the caller has it already."""
    groups: dict[tuple[str, str, PeriodKind, date], list[Target]] = defaultdict(list)
    for subject in subjects:
        groups[(subject.scope, subject.kpi, subject.period, subject.period_start)].append(subject)
    known = calendars(connection)
    if roster is None:
        roster = queries.agent_teams(connection, key_teams)
    changes = value_changes(connection, subjects)
    out: dict[int, tuple[Decimal, Pacing]] = {}
    for (scope, kpi, _period, _start), members in groups.items():
        rng = so_far(members[0], settings, as_of)
        ids = [m.scope_id for m in members if m.scope_id]
        read = actuals(connection, settings, scope, [kpi], rng, ids, key_teams=key_teams)
        for member in members:
            actual = read.get(member.scope_id, {}).get(kpi) or Decimal(0)
            full = member.range(settings)
            calendar = calendar_for_team(known, team_of(member, roster))
            out[member.target_id] = (
                actual,
                pacing(
                    kpi,
                    actual,
                    changes[member.target_id],
                    calendar,
                    settings.zone,
                    full.start,
                    full.end,
                    as_of,
                ),
            )
    return out


def present_pacing(subject: Target, result: Pacing) -> dict[str, Any]:
    kpi = subject.kpi
    return {
        "actual": amount(kpi, result.actual),
        "value": amount(kpi, result.value),
        "elapsed_share": share(result.elapsed_share),
        "expected": amount(kpi, result.expected),
        "attainment": share(result.attainment),
        "pace": share(result.pace),
        "projection": amount(kpi, result.projection),
        "status": result.status,
    }


def pacing_rows(
    connection: Connection,
    settings: ApiSettings,
    subjects: Sequence[Target],
    as_of: datetime,
    roster: dict[str, str] | None = None,
    *,
    key_teams: KeyTeams,
) -> list[dict[str, Any]]:
    paced = pace_many(connection, settings, subjects, as_of, roster, key_teams=key_teams)
    return [
        {**present_target(s, settings), "pacing": present_pacing(s, paced[s.target_id][1])}
        for s in subjects
    ]


def attainment_ranking(
    connection: Connection,
    settings: ApiSettings,
    kpi: str,
    period: PeriodKind,
    start: date,
    as_of: datetime,
    teams: Sequence[str],
    *,
    key_teams: KeyTeams,
) -> list[dict[str, Any]]:
    """Agents with a target for ``kpi`` in the period, ranked by attainment (ties share);
    ``teams`` narrows them, and a key limited to teams sees the agents of those only."""
    subjects = find_targets(
        connection, scope="agent", kpis=[kpi], period=period, period_start=start
    )
    roster = queries.agent_teams(connection, key_teams)
    allowed = set(teams) if teams else key_teams
    if allowed is not None:
        subjects = [s for s in subjects if roster.get(s.scope_id) in allowed]
    paced = pace_many(connection, settings, subjects, as_of, roster, key_teams=key_teams)
    rows = []
    for subject in subjects:
        result = paced[subject.target_id][1]
        rows.append((result.attainment, subject, result))
    rows.sort(key=lambda r: (-(r[0] if r[0] is not None else Decimal(-1)), r[1].scope_id))
    out = []
    rank, previous = 0, None
    for position, (attained, subject, result) in enumerate(rows, 1):
        if attained != previous:
            rank, previous = position, attained
        out.append(
            {
                "rank": rank,
                "agent_id": subject.scope_id,
                "team_id": roster.get(subject.scope_id),
                "target_id": subject.target_id,
                **present_pacing(subject, result),
            }
        )
    return out


def split(
    connection: Connection,
    settings: ApiSettings,
    target_id: int,
    request: SplitRequest,
    principal: Principal,
) -> dict[str, Any]:
    """A team's or the floor's target shared over agents, with the uplift; ``apply`` creates
    (or changes) each agent's target for the same KPI and period."""
    subject = get_target(connection, target_id)
    if subject.scope not in ("team", "floor"):
        raise InvalidInput(
            f"target {target_id} is a {subject.scope} target; only a team's or the floor's "
            "quota is split over agents"
        )
    if subject.kpi in RATIO_BY_KEY:
        raise InvalidInput(
            f"{subject.kpi} is a ratio: it is not split but holds for every agent; create "
            "the same target for each agent instead"
        )
    roster = queries.agent_teams(connection, None)
    if request.weighting == "given":
        if not request.weights:
            raise InvalidInput(
                "weighting=given needs weights: {agent id: weight}",
                details=[{"field": "weights"}],
            )
        agents = list(request.weights)
    elif request.agent_ids:
        agents = list(dict.fromkeys(request.agent_ids))
    else:
        agents = sorted(
            a for a, t in roster.items() if subject.scope == "floor" or t == subject.scope_id
        )
    if not agents:
        raise InvalidInput(
            f"team {subject.scope_id} has no agents on the roster yet; give agent_ids"
        )
    if request.weighting == "equal":
        weights = dict.fromkeys(agents, Decimal(1))
        basis: dict[str, Any] = {}
    elif request.weighting == "given":
        weights = dict(request.weights or {})
        basis = {}
    else:
        previous = previous_period_start(subject.period, subject.period_start)
        rng = TimeRange(
            local_midnight(previous, settings.zone),
            local_midnight(subject.period_start, settings.zone),
        )
        results = actuals(connection, settings, "agent", [subject.kpi], rng, agents, key_teams=None)
        last = {a: results.get(a, {}).get(subject.kpi) for a in agents}
        weights = weights_from_results(last)
        basis = {"from": rng.start.astimezone(settings.zone).isoformat(), "results": last}
    try:
        shares = split_quota(subject.value, weights, request.uplift, places(subject.kpi))
    except ValueError as exc:
        raise InvalidInput(str(exc), details=[{"field": "weights"}]) from exc
    applied: dict[str, int] = {}
    if request.apply:
        for agent_id, value in shares.items():
            existing = find_targets(
                connection,
                scope="agent",
                scope_ids=[agent_id],
                kpis=[subject.kpi],
                period=subject.period,
                period_start=subject.period_start,
            )
            if existing:
                changed = change_target(
                    connection,
                    settings,
                    existing[0].target_id,
                    TargetUpdate(value=value),
                    principal,
                    action="split",
                )
                applied[agent_id] = changed.target_id
            else:
                created = create_target(
                    connection,
                    settings,
                    NewTarget(
                        scope="agent",
                        scope_id=agent_id,
                        kpi=subject.kpi,
                        period=subject.period,
                        period_start=subject.period_start.isoformat(),
                        value=value,
                    ),
                    principal,
                )
                applied[agent_id] = created.target_id
    total = sum(weights.values(), Decimal(0))
    return {
        "target": present_target(subject, settings),
        "uplift": float(request.uplift),
        "weighting": request.weighting,
        "total": amount(
            subject.kpi, (subject.value * request.uplift).quantize(places(subject.kpi))
        ),
        **({"last_period": _present_basis(subject.kpi, basis)} if basis else {}),
        "shares": [
            {
                "agent_id": agent_id,
                "team_id": roster.get(agent_id),
                "weight": share(weights[agent_id] / total),
                "value": amount(subject.kpi, value),
                "target_id": applied.get(agent_id),
            }
            for agent_id, value in shares.items()
        ],
        "applied": request.apply,
    }


def _present_basis(kpi: str, basis: dict[str, Any]) -> dict[str, Any]:
    return {
        "from": basis["from"],
        "results": {a: amount(kpi, v) for a, v in basis["results"].items()},
    }
