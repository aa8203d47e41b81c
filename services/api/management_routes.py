"""HTTP routes for managing by the numbers: targets and their history, pacing, quota splits,
scorecards, the funnel and its backward plan, the diagnosis of a target behind, anomalies,
and the working calendars pacing uses.

Writes (targets, splits, calendars) need an admin key; reads need a read key, and a key
limited to some teams sees only those teams' targets, calendars and agents, with numbers
counted from those teams' records (``queries.Filters.key_teams``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from sqlalchemy import Connection

from services.api import queries
from services.api.anomalies import find_anomalies
from services.api.diagnosis import diagnose
from services.api.export.files import FILE_RESPONSES, respond
from services.api.export.reports import pacing_report, scorecards_report
from services.api.funnel import funnel_rows, present_row, target_plan
from services.api.numbers import AttainmentCap
from services.api.periods import Period, TimeRange, resolve_range
from services.api.routes import (
    Admin,
    Db,
    FileFormat,
    Reader,
    ReportLang,
    Settings,
    WriteDb,
    _ids,
    filters_for,
    parse_timestamp,
)
from services.api.settings import ApiSettings
from services.api.targets import (
    DEFAULT_CALENDAR_NAME,
    FIRST_YEAR,
    LAST_YEAR,
    NewTarget,
    SplitRequest,
    Target,
    TargetScope,
    TargetUpdate,
    attainment_ranking,
    calendars,
    change_target,
    check_kpi,
    create_target,
    default_period_start,
    delete_target,
    find_targets,
    get_readable_target,
    history,
    pacing_rows,
    parse_period_start,
    parse_weights,
    present_target,
    put_calendar,
    readable,
    scorecards,
    split,
    team_of,
)
from shared.auth import Principal
from shared.errors import ERROR_RESPONSES, ErrorBody, InvalidInput
from shared.events import PRINTABLE
from shared.models import working_calendar
from shared.playbook import DEFAULT_ATTAINMENT_CAP, DEFAULT_CALENDAR, PeriodKind, WorkingCalendar

router = APIRouter(responses=ERROR_RESPONSES)
Ids = Annotated[list[str] | None, Query()]
AsOf = Annotated[
    str | None, Query(description="RFC 3339 with offset; the moment to judge at (default now)")
]
TargetId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The target's id")]
CalendarName = Annotated[
    str, Path(min_length=1, max_length=64, pattern=PRINTABLE, description="A team id, or *")
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such target"}
}


def _as_of(raw: str | None) -> datetime:
    moment = parse_timestamp("as_of", raw)
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        raise InvalidInput("as_of must carry a UTC offset, e.g. 2026-11-16T00:00:00+08:00")
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise InvalidInput(f"as_of must be in the years {FIRST_YEAR}–{LAST_YEAR}")
    return moment.astimezone(UTC)


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


@router.post("/v1/targets", status_code=201, tags=["targets"])
def post_target(
    new: NewTarget, settings: Settings, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Create a target. 422 for an unknown KPI, a negative value, a period start that is not
    a local period boundary in the deployment's zone, or a target that already covers the
    same scope, KPI and period (change that one instead)."""
    created = create_target(connection, settings, new, admin)
    return _with_history(connection, settings, created)


@router.get("/v1/targets", tags=["targets"])
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
        scope_ids=_ids(scope_id),
        kpis=[check_kpi(kpi)] if kpi else [],
        period=period,
        active_at=_as_of(active_at) if active_at else None,
        settings=settings,
    )
    roster = queries.agent_teams(connection, reader.team_ids)
    visible = [t for t in found if readable(reader, team_of(t, roster))]
    return {"targets": [present_target(t, settings) for t in visible]}


@router.get("/v1/targets/{target_id}", tags=["targets"], responses=_NOT_FOUND)
def get_one_target(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db
) -> dict[str, Any]:
    """A target (deleted ones too) with its history: who changed what, when."""
    subject = _readable_target(connection, reader, target_id, deleted=True)
    return _with_history(connection, settings, subject)


@router.patch("/v1/targets/{target_id}", tags=["targets"], responses=_NOT_FOUND)
def patch_target(
    target_id: TargetId, change: TargetUpdate, settings: Settings, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Change a target's value, from ``effective_from`` (default now) to the period's end.
    Pacing accrues the expected-to-date at the value in force at each moment."""
    changed = change_target(connection, settings, target_id, change, admin)
    return _with_history(connection, settings, changed)


@router.delete("/v1/targets/{target_id}", tags=["targets"], responses=_NOT_FOUND)
def remove_target(
    target_id: TargetId, settings: Settings, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Delete a target. Its history stays readable at ``GET /v1/targets/{id}``."""
    deleted = delete_target(connection, target_id, admin)
    return _with_history(connection, settings, deleted)


@router.get("/v1/targets/{target_id}/history", tags=["targets"], responses=_NOT_FOUND)
def get_history(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db
) -> dict[str, Any]:
    subject = _readable_target(connection, reader, target_id, deleted=True)
    return {"target_id": target_id, "history": history(connection, settings, subject)}


@router.get("/v1/targets/{target_id}/pacing", tags=["targets"], responses=_NOT_FOUND)
def get_pacing(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db, as_of: AsOf = None
) -> dict[str, Any]:
    """Attainment, expected-to-date over the working time, pace, projection and status."""
    subject = _readable_target(connection, reader, target_id)
    moment = _as_of(as_of)
    row = pacing_rows(connection, settings, [subject], moment, key_teams=reader.team_ids)[0]
    return {"as_of": moment.astimezone(settings.zone).isoformat(), **row}


@router.post("/v1/targets/{target_id}/split", tags=["targets"], responses=_NOT_FOUND)
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


@router.get("/v1/targets/{target_id}/plan", tags=["funnel"], responses=_NOT_FOUND)
def get_plan(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db, as_of: AsOf = None
) -> dict[str, Any]:
    """The backward plan (倒推法) of a result target (revenue, margin, sales, leads_won):
    leads needed per funnel stage per week, each started week planned at its start from the
    conversion seen over the four weeks before, with the week's actuals beside it."""
    subject = _readable_target(connection, reader, target_id)
    return target_plan(connection, settings, subject, _as_of(as_of), key_teams=reader.team_ids)


@router.get("/v1/targets/{target_id}/diagnosis", tags=["coaching"], responses=_NOT_FOUND)
def get_diagnosis(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db, as_of: AsOf = None
) -> dict[str, Any]:
    """Why a result target is behind: driver gaps against the target-implied drivers, leads
    accumulated in C/B against what is still needed, and the target against the best past
    periods — in one list ordered by impact, each with the playbook's question."""
    subject = _readable_target(connection, reader, target_id)
    return diagnose(connection, settings, subject, _as_of(as_of), key_teams=reader.team_ids)


@router.get("/v1/pacing", tags=["targets"], responses=FILE_RESPONSES)
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
    moment = _as_of(as_of)
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


@router.get("/v1/leaderboard/attainment", tags=["metrics"])
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
    moment = _as_of(as_of)
    key = check_kpi(kpi)
    start = (
        parse_period_start(period_start, period, settings)
        if period_start
        else default_period_start(period, settings, moment)
    )
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


@router.get("/v1/scorecards", tags=["targets"], responses=FILE_RESPONSES)
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
    moment = _as_of(as_of)
    parsed = parse_weights(weights)
    start = (
        parse_period_start(period_start, period, settings)
        if period_start
        else default_period_start(period, settings, moment)
    )
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


# ---------------------------------------------------------------------------------------------
# The funnel


@router.get("/v1/funnel", tags=["funnel"])
def get_funnel(
    reader: Reader,
    settings: Settings,
    connection: Db,
    group_by: Literal["none", "agent", "team"] = "none",
    period: Period | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    as_of: AsOf = None,
    agent_id: Ids = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
) -> dict[str, Any]:
    """Leads now in each stage (or at ``as_of``), the stage-to-next conversion over the
    period (default: the four weeks before), and the funnel's shape: healthy, pile-up in
    C, too few in C, too few new leads at the top."""
    moment = _as_of(as_of) if as_of else None
    if period is None and from_ is None and to is None:
        end = moment or datetime.now(UTC)
        rng = TimeRange(end - timedelta(days=28), end)
    else:
        rng = resolve_range(
            period,
            parse_timestamp("from", from_),
            parse_timestamp("to", to),
            settings.zone,
            first_weekday=settings.week_start,
        )
    groups = () if group_by == "none" else (group_by,)
    filters = filters_for(reader, agent_id, team_id, campaign_id)
    rows = funnel_rows(connection, filters, groups, rng, moment)
    return {
        "as_of": (moment or datetime.now(UTC)).astimezone(settings.zone).isoformat(),
        "rates_from": rng.start.astimezone(settings.zone).isoformat(),
        "rates_to": rng.end.astimezone(settings.zone).isoformat(),
        "group_by": list(groups),
        "rows": [present_row(row, groups) for row in rows],
    }


# ---------------------------------------------------------------------------------------------
# Anomalies


@router.get("/v1/anomalies", tags=["coaching"])
def get_anomalies(
    reader: Reader,
    settings: Settings,
    connection: Db,
    as_of: AsOf = None,
    agent_id: Ids = None,
    team_id: Ids = None,
    all_kpis: Annotated[bool, Query(alias="all", description="Every KPI judged")] = False,
) -> dict[str, Any]:
    """Each agent's KPIs today (up to ``as_of``) against the same weekday of the previous
    four weeks over the same hours; far is three spreads (see ``rule``)."""
    filters = filters_for(reader, agent_id, team_id, None)
    return find_anomalies(connection, settings, _as_of(as_of), filters, everything=all_kpis)


# ---------------------------------------------------------------------------------------------
# Working calendars


@router.get("/v1/working-calendars", tags=["targets"])
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


@router.put("/v1/working-calendars/{name}", tags=["targets"])
def put_working_calendar(
    name: CalendarName, calendar: WorkingCalendar, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Set a team's working calendar (``name`` = team id, or ``*`` for the default)."""
    put_calendar(connection, name.strip(), calendar, admin)
    return {"name": name.strip(), "calendar": calendar.model_dump(mode="json")}


@router.delete("/v1/working-calendars/{name}", status_code=204, tags=["targets"])
def delete_working_calendar(name: CalendarName, connection: WriteDb, _admin: Admin) -> Response:
    connection.execute(working_calendar.delete().where(working_calendar.c.team_id == name))
    return Response(status_code=204)
