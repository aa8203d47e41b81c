"""HTTP routes for managing by the numbers: targets and their history, pacing, quota splits,
scorecards, the attainment ranking, and the working calendars pacing uses.

Writes (targets, splits, calendars) need an admin key; reads need a read key, and a key
limited to some teams sees only those teams' targets, calendars and agents, with numbers
counted from those teams' records (``queries.Filters.key_teams``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import Connection

from services.api.deps import (
    Admin,
    AsOf,
    Db,
    FileFormat,
    Ids,
    Reader,
    ReportLang,
    Settings,
    WriteDb,
    filters_for,
    ids,
    judged_at,
)
from services.api.export.files import FILE_RESPONSES, respond
from services.api.export.reports import pacing_report, scorecards_report
from services.api.metrics import queries
from services.api.numbers import AttainmentCap
from services.api.settings import ApiSettings
from services.api.targets import schemas
from services.api.targets.repository import (
    Target,
    calendars,
    change_target,
    create_target,
    delete_calendar,
    delete_target,
    find_targets,
    history,
    put_calendar,
)
from services.api.targets.rules import (
    DEFAULT_CALENDAR_NAME,
    TargetScope,
    check_kpi,
    default_period_start,
    parse_period_start,
    parse_weights,
)
from services.api.targets.schemas import (
    TARGET_NOT_FOUND,
    CalendarName,
    NewTarget,
    SplitRequest,
    TargetId,
    TargetUpdate,
)
from services.api.targets.scorecards import scorecards
from services.api.targets.service import (
    attainment_ranking,
    get_readable_target,
    pacing_rows,
    present_target,
    readable,
    split,
    team_of,
)
from shared.auth import Principal
from shared.errors import ERROR_RESPONSES
from shared.playbook import DEFAULT_ATTAINMENT_CAP, DEFAULT_CALENDAR, PeriodKind, WorkingCalendar

router = APIRouter(responses=ERROR_RESPONSES)


def _readable_target(
    connection: Connection, reader: Principal, target_id: int, deleted: bool = False
) -> Target:
    return get_readable_target(connection, reader, target_id, deleted=deleted)


def _with_history(connection: Connection, settings: ApiSettings, subject: Target) -> dict[str, Any]:
    return {
        **present_target(subject, settings),
        "history": history(connection, settings, subject),
    }


# ---------------------------------------------------------------------------------------------
# Targets


@router.post(
    "/v1/targets", status_code=201, response_model=schemas.TargetWithHistory, tags=["targets"]
)
def post_target(
    new: NewTarget, settings: Settings, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Create a target. 422 for an unknown KPI, a negative value, a period start that is not
    a local period boundary in the deployment's zone, or a target that already covers the
    same scope, KPI and period (change that one instead)."""
    created = create_target(connection, settings, new, admin)
    return _with_history(connection, settings, created)


@router.get("/v1/targets", response_model=schemas.TargetList, tags=["targets"])
def list_targets(
    reader: Reader,
    settings: Settings,
    connection: Db,
    scope: TargetScope | None = None,
    scope_id: Ids = None,
    kpi: str | None = None,
    period: PeriodKind | None = None,
    active_at: AsOf = None,
) -> dict[str, Any]:
    """Targets (not deleted), optionally those whose period contains ``active_at``."""
    found = find_targets(
        connection,
        scope=scope,
        scope_ids=ids(scope_id),
        kpis=[check_kpi(kpi)] if kpi else [],
        period=period,
        active_at=judged_at(active_at) if active_at else None,
        settings=settings,
    )
    roster = queries.agent_teams(connection, reader.team_ids)
    visible = [t for t in found if readable(reader, team_of(t, roster))]
    return {"targets": [present_target(t, settings) for t in visible]}


@router.get(
    "/v1/targets/{target_id}",
    response_model=schemas.TargetWithHistory,
    tags=["targets"],
    responses=TARGET_NOT_FOUND,
)
def get_one_target(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db
) -> dict[str, Any]:
    """A target (deleted ones too) with its history: who changed what, when."""
    subject = _readable_target(connection, reader, target_id, deleted=True)
    return _with_history(connection, settings, subject)


@router.patch(
    "/v1/targets/{target_id}",
    response_model=schemas.TargetWithHistory,
    tags=["targets"],
    responses=TARGET_NOT_FOUND,
)
def patch_target(
    target_id: TargetId, change: TargetUpdate, settings: Settings, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Change a target's value, from ``effective_from`` (default now) to the period's end.
    Pacing accrues the expected-to-date at the value in force at each moment."""
    changed = change_target(connection, settings, target_id, change, admin)
    return _with_history(connection, settings, changed)


@router.delete(
    "/v1/targets/{target_id}",
    response_model=schemas.TargetWithHistory,
    tags=["targets"],
    responses=TARGET_NOT_FOUND,
)
def remove_target(
    target_id: TargetId, settings: Settings, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Delete a target. Its history stays readable at ``GET /v1/targets/{id}``."""
    deleted = delete_target(connection, target_id, admin)
    return _with_history(connection, settings, deleted)


@router.get(
    "/v1/targets/{target_id}/history",
    response_model=schemas.TargetHistory,
    tags=["targets"],
    responses=TARGET_NOT_FOUND,
)
def get_history(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db
) -> dict[str, Any]:
    subject = _readable_target(connection, reader, target_id, deleted=True)
    return {"target_id": target_id, "history": history(connection, settings, subject)}


@router.get(
    "/v1/targets/{target_id}/pacing",
    response_model=schemas.TargetPacingAt,
    tags=["targets"],
    responses=TARGET_NOT_FOUND,
)
def get_pacing(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db, as_of: AsOf = None
) -> dict[str, Any]:
    """Attainment, expected-to-date over the working time, pace, projection and status."""
    subject = _readable_target(connection, reader, target_id)
    moment = judged_at(as_of)
    row = pacing_rows(connection, settings, [subject], moment, key_teams=reader.team_ids)[0]
    return {"as_of": moment.astimezone(settings.zone).isoformat(), **row}


@router.post(
    "/v1/targets/{target_id}/split",
    response_model=schemas.SplitResponse,
    response_model_exclude_unset=True,
    tags=["targets"],
    responses=TARGET_NOT_FOUND,
)
def post_split(
    target_id: TargetId,
    request: SplitRequest,
    settings: Settings,
    connection: WriteDb,
    admin: Admin,
) -> dict[str, Any]:
    """Split a team's or the floor's quota over agents: ``value × uplift`` (1.2 by
    default) shared by weight — ``equal``, ``last_period`` (each agent's result in the
    period before; one without a result weighs as the weakest), or ``given``. With
    ``apply``, each agent's target for the same KPI and period is created or changed."""
    return split(connection, settings, target_id, request, admin)


@router.get(
    "/v1/pacing", response_model=schemas.PacingList, tags=["targets"], responses=FILE_RESPONSES
)
def get_all_pacing(
    reader: Reader,
    settings: Settings,
    connection: Db,
    as_of: AsOf = None,
    scope: TargetScope | None = None,
    kpi: str | None = None,
    team_id: Ids = None,
    status: Literal["on_track", "at_risk", "behind", "not_started"] | None = None,
    format: FileFormat = "json",
    lang: ReportLang = "en",
) -> Any:
    """Pacing of every target whose period contains ``as_of``, each with its team (the
    scope's team, an agent's roster team; none for a campaign's or the floor's)."""
    moment = judged_at(as_of)
    teams = filters_for(reader, None, team_id, None).team_ids
    found = find_targets(
        connection,
        scope=scope,
        kpis=[check_kpi(kpi)] if kpi else [],
        active_at=moment,
        settings=settings,
    )
    roster = queries.agent_teams(connection, reader.team_ids)
    found = [
        t
        for t in found
        if readable(reader, team := team_of(t, roster)) and (not teams or team in teams)
    ]
    rows = pacing_rows(connection, settings, found, moment, roster, key_teams=reader.team_ids)
    for row, subject in zip(rows, found, strict=True):
        row["team_id"] = team_of(subject, roster) or None
    if status is not None:
        rows = [r for r in rows if r["pacing"]["status"] == status]
    answer = {"as_of": moment.astimezone(settings.zone).isoformat(), "targets": rows}
    if format == "json":
        return answer
    asked = {"scope": scope, "kpi": kpi, "team_id": team_id, "status": status}
    return respond(pacing_report(answer, lang, settings.timezone, asked), format)


@router.get(
    "/v1/leaderboard/attainment", response_model=schemas.AttainmentLeaderboard, tags=["metrics"]
)
def get_attainment_leaderboard(
    reader: Reader,
    settings: Settings,
    connection: Db,
    kpi: str = "revenue",
    period: PeriodKind = PeriodKind.month,
    period_start: str | None = None,
    as_of: AsOf = None,
    team_id: Ids = None,
) -> dict[str, Any]:
    """Agents ranked by attainment of their targets for one KPI and period (ties share a
    rank); each row with its pace and status. Default: the period containing ``as_of``."""
    moment = judged_at(as_of)
    key = check_kpi(kpi)
    start = _period_start(period_start, period, settings, moment)
    teams = filters_for(reader, None, team_id, None).team_ids
    rows = attainment_ranking(
        connection, settings, key, period, start, moment, teams, key_teams=reader.team_ids
    )
    return {
        "kpi": key,
        "period": period.value,
        "period_start": start.isoformat(),
        "as_of": moment.astimezone(settings.zone).isoformat(),
        "rows": rows,
    }


@router.get(
    "/v1/scorecards",
    response_model=schemas.ScorecardsResponse,
    response_model_exclude_unset=True,
    tags=["targets"],
    responses=FILE_RESPONSES,
)
def get_scorecards(
    reader: Reader,
    settings: Settings,
    connection: Db,
    weights: Annotated[str, Query(description="kpi:weight pairs summing to 1")],
    scope: Literal["agent", "team"] = "agent",
    period: PeriodKind = PeriodKind.month,
    period_start: str | None = None,
    cap: AttainmentCap = DEFAULT_ATTAINMENT_CAP,
    as_of: AsOf = None,
    team_id: Ids = None,
    format: FileFormat = "json",
    lang: ReportLang = "en",
) -> Any:
    """Weighted KPI scorecards for the monthly, quarterly or yearly review: each KPI's
    attainment against its target (capped), times its weight, summed."""
    moment = judged_at(as_of)
    parsed = parse_weights(weights)
    start = _period_start(period_start, period, settings, moment)
    teams = filters_for(reader, None, team_id, None).team_ids
    rows = scorecards(
        connection,
        settings,
        scope,
        period,
        start,
        parsed,
        cap,
        moment,
        teams,
        key_teams=reader.team_ids,
    )
    answer = {
        "scope": scope,
        "period": period.value,
        "period_start": start.isoformat(),
        "weights": {k: float(v) for k, v in parsed.items()},
        "cap": float(cap),
        "rows": rows,
    }
    if format == "json":
        return answer
    asked = {"team_id": team_id}
    return respond(scorecards_report(answer, lang, settings.timezone, asked), format)


def _period_start(
    asked: str | None, period: PeriodKind, settings: ApiSettings, moment: datetime
) -> date:
    """The period asked for, else the one containing ``moment``."""
    if asked:
        return parse_period_start(asked, period, settings)
    return default_period_start(period, settings, moment)


# ---------------------------------------------------------------------------------------------
# Working calendars


@router.get("/v1/working-calendars", response_model=schemas.WorkingCalendars, tags=["targets"])
def get_calendars(reader: Reader, connection: Db) -> dict[str, Any]:
    """Working days and hours per team; ``*`` holds for every team without its own (and for
    campaign and floor targets). Without any: Monday to Friday, 09:00–18:00. A key limited
    to some teams sees those teams' calendars and ``*``."""
    known = {
        name: calendar
        for name, calendar in calendars(connection).items()
        if name == DEFAULT_CALENDAR_NAME or readable(reader, name)
    }
    return {
        "default": (known.get(DEFAULT_CALENDAR_NAME) or DEFAULT_CALENDAR).model_dump(mode="json"),
        "teams": {k: v.model_dump(mode="json") for k, v in sorted(known.items())},
    }


@router.put("/v1/working-calendars/{name}", response_model=schemas.NamedCalendar, tags=["targets"])
def put_working_calendar(
    name: CalendarName, calendar: WorkingCalendar, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Set a team's working calendar (``name`` = team id, or ``*`` for the default)."""
    put_calendar(connection, name.strip(), calendar, admin)
    return {"name": name.strip(), "calendar": calendar.model_dump(mode="json")}


@router.delete("/v1/working-calendars/{name}", status_code=204, tags=["targets"])
def delete_working_calendar(name: CalendarName, connection: WriteDb, _admin: Admin) -> Response:
    delete_calendar(connection, name)
    return Response(status_code=204)
