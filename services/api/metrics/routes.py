"""HTTP routes of metrics and leaderboards: any KPI for any scope and period, agents ranked
by one KPI, one agent's place among them, and the disposition table with its counts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.api.deps import (
    Db,
    FileFormat,
    From,
    Ids,
    Reader,
    ReportLang,
    Settings,
    filters_for,
    request_time,
)
from services.api.export.files import FILE_RESPONSES, respond
from services.api.export.reports import leaderboard_report, metrics_report
from services.api.metrics import schemas
from services.api.metrics.dispositions import disposition_rows, published_table
from services.api.metrics.periods import Granularity, Period
from services.api.metrics.service import MetricsService, parse_group_by, parse_metrics
from services.api.numbers import MinVolume
from shared.dispositions import Flag, cached_dispositions
from shared.errors import ERROR_RESPONSES, ErrorBody, NotFound

router = APIRouter(responses=ERROR_RESPONSES)


@router.get(
    "/v1/metrics",
    response_model=schemas.MetricsResponse,
    tags=["metrics"],
    responses=FILE_RESPONSES,
)
def get_metrics(
    reader: Reader,
    settings: Settings,
    connection: Db,
    metrics: Annotated[str | None, Query(description="Comma-separated KPI keys")] = None,
    group_by: Annotated[str | None, Query(description="agent, team, campaign")] = None,
    granularity: Granularity = Granularity.none,
    period: Period | None = None,
    from_: From = None,
    to: str | None = None,
    agent_id: Ids = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
    format: FileFormat = "json",
    lang: ReportLang = "en",
) -> Any:
    """KPIs for any scope and period; the formulas are those of kpis.md.

    Periods and buckets are in the deployment's time zone, or in a team's own zone
    (``CALLBOARD_TEAM_TIMEZONES``) when the request names that one team.
    """
    keys = parse_metrics(metrics)
    filters = filters_for(reader, agent_id, team_id, campaign_id)
    when = request_time(settings, filters, period, from_, to)
    query = when.metrics_query(parse_group_by(group_by), granularity, filters, settings.week_start)
    rows = MetricsService(settings).metrics(connection, keys, query)
    answer = {
        **when.bounds(),
        "granularity": granularity.value,
        "metrics": list(keys),
        "rows": rows,
    }
    if format == "json":
        return answer
    asked = {"group_by": group_by, "agent_id": agent_id, "team_id": team_id}
    asked["campaign_id"] = campaign_id
    return respond(metrics_report(answer, query.group_by, lang, asked), format)


@router.get(
    "/v1/leaderboard",
    response_model=schemas.LeaderboardResponse,
    tags=["metrics"],
    responses=FILE_RESPONSES,
)
def get_leaderboard(
    reader: Reader,
    settings: Settings,
    connection: Db,
    metric: str = "sales",
    period: Period | None = None,
    from_: From = None,
    to: str | None = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    min_volume: MinVolume = None,
    order: Annotated[str, Query(pattern="^(desc|asc)$")] = "desc",
    format: FileFormat = "json",
    lang: ReportLang = "en",
) -> Any:
    """Agents ranked by one KPI; ties share a rank; rank change against the previous period."""
    filters = filters_for(reader, None, team_id, campaign_id)
    when = request_time(settings, filters, period, from_, to)
    effective_min, rows = MetricsService(settings).leaderboard(
        connection,
        metric.strip(),
        when.range,
        filters,
        limit=limit,
        min_volume=min_volume,
        ascending=order == "asc",
    )
    answer = {
        "metric": metric,
        **when.bounds(),
        "min_volume": effective_min,
        "rows": rows,
    }
    if format == "json":
        return answer
    asked = {"team_id": team_id, "campaign_id": campaign_id, "order": order, "limit": limit}
    return respond(leaderboard_report(answer, lang, asked), format)


@router.get(
    "/v1/dispositions",
    response_model=schemas.DispositionsResponse,
    response_model_by_alias=True,
    tags=["metrics"],
)
def get_dispositions(
    reader: Reader,
    settings: Settings,
    connection: Db,
    group_by: str | None = None,
    granularity: Granularity = Granularity.none,
    period: Period | None = None,
    from_: From = None,
    to: str | None = None,
    agent_id: Ids = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
) -> dict[str, Any]:
    """The disposition table, and calls per code and per flag for any scope and period.

    ``table`` publishes every code with its flags: the rows for every campaign, then each
    campaign's overrides (``CALLBOARD_DISPOSITIONS_FILE``). Each row counts the calls by
    their latest code; a code's ``flags`` are those of the row's campaign when the row is one
    campaign's (grouped or filtered by one), else those for every campaign. ``flag_calls``
    counts each call with the flags of its own campaign. A code the table does not know is
    counted, ``known: false``, every flag off.
    """
    filters = filters_for(reader, agent_id, team_id, campaign_id)
    when = request_time(settings, filters, period, from_, to)
    query = when.metrics_query(parse_group_by(group_by), granularity, filters, settings.week_start)
    MetricsService(settings).check_answer_size(connection, query)
    table = cached_dispositions(settings.dispositions_file)
    return {
        **when.bounds(),
        "granularity": granularity.value,
        "flags": [flag.value for flag in Flag],
        "table": published_table(table),
        "rows": disposition_rows(connection, query, table),
    }


@router.get(
    "/v1/leaderboard/agents/{agent_id}",
    response_model=schemas.AgentRankResponse,
    tags=["metrics"],
    responses={404: {"model": ErrorBody, "description": "The agent is not ranked"}},
)
def get_agent_rank(
    agent_id: str,
    reader: Reader,
    settings: Settings,
    connection: Db,
    metric: str = "sales",
    period: Period | None = None,
    from_: From = None,
    to: str | None = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
    around: Annotated[int, Query(ge=0, le=50)] = 2,
    min_volume: MinVolume = None,
) -> dict[str, Any]:
    """One agent's rank, with the ``around`` agents ranked just above and below it."""
    filters = filters_for(reader, None, team_id, campaign_id)
    when = request_time(settings, filters, period, from_, to)
    effective_min, rows = MetricsService(settings).leaderboard(
        connection,
        metric.strip(),
        when.range,
        filters,
        limit=None,
        min_volume=min_volume,
    )
    position = next((i for i, row in enumerate(rows) if row["agent_id"] == agent_id), None)
    if position is None:
        raise NotFound(
            f"agent {agent_id} is not ranked by {metric} in this period "
            f"(no data, or below the minimum volume {effective_min})"
        )
    return {
        "metric": metric,
        **when.bounds(),
        "min_volume": effective_min,
        "ranked": len(rows),
        "agent": rows[position],
        "rows": rows[max(position - around, 0) : position + around + 1],
    }
