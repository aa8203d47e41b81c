"""HTTP routes for coaching: the driver model, the best time to call, dispositions, and an
agent's own place on the leaderboard."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.api import queries, schemas
from services.api.analysis import best_time_to_call, driver_model
from services.api.dispositions import disposition_rows, published_table
from services.api.periods import Granularity, Period
from services.api.queries import Filters
from services.api.queries import Query as MetricsQuery
from services.api.routes import Db, Reader, Settings, filters_for, request_time
from services.api.service import MetricsService, parse_group_by
from shared.dispositions import Flag, cached_dispositions
from shared.errors import ERROR_RESPONSES, ErrorBody, InvalidInput, NotFound
from shared.kpis import DRIVERS

router = APIRouter(responses=ERROR_RESPONSES)

Ids = Annotated[list[str] | None, Query()]


@router.get("/v1/drivers", tags=["coaching"])
def get_drivers(
    request: Request,
    reader: Reader,
    settings: Settings,
    connection: Db,
    agent_id: str | None = None,
    team_id: str | None = None,
    reference: str = "team_median",
    period: Period | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
) -> dict[str, Any]:
    """The performance-driver model for an agent or team against a reference.

    ``reference``: ``team_median`` (the median of each driver over the agent's team, or over
    all teams for a team), ``previous_period`` (the same scope, the period of equal length
    before), or ``target`` (give ``target_<driver>`` for each driver). Each driver's
    ``log_share`` is its exact term in ``ln(result / reference)``; ``ranked_by_cost`` lists
    the drivers that pull the result below the reference, the costliest first.
    """
    if team_id is not None:
        filters_for(reader, None, [team_id], None)
    elif agent_id is not None and reader.team_ids is not None:
        # A key limited to some teams sees the agents of those teams only.
        reader.readable_teams([queries.agent_teams(connection).get(agent_id) or ""])
    targets: dict[str, Decimal] = {}
    for driver in DRIVERS:
        raw = request.query_params.get(f"target_{driver.key}")
        if raw is not None:
            try:
                targets[driver.key] = Decimal(raw)
            except InvalidOperation as exc:
                raise InvalidInput(f"target_{driver.key}={raw!r} is not a number") from exc
    rng = request_time(settings, Filters(), period, from_, to).range
    return driver_model(
        connection,
        settings,
        rng,
        agent_id=agent_id,
        team_id=team_id,
        reference=reference,
        targets=targets,
    )


@router.get("/v1/best-time", tags=["coaching"])
def get_best_time(
    reader: Reader,
    settings: Settings,
    connection: Db,
    period: Period | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
) -> dict[str, Any]:
    """Connect and contact rate by local weekday (1 = Monday) and hour of day."""
    filters = filters_for(reader, None, team_id, campaign_id)
    when = request_time(
        settings, Filters(), period or (None if from_ or to else Period.mtd), from_, to
    )
    cells = best_time_to_call(connection, settings, when.range, filters)
    return {**when.bounds(), "cells": cells}


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
    from_: Annotated[str | None, Query(alias="from")] = None,
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
    query = MetricsQuery(
        parse_group_by(group_by),
        granularity,
        when.range,
        filters,
        when.zone,
        settings.week_start,
        native=when.native,
    )
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
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
    around: Annotated[int, Query(ge=0, le=50)] = 2,
    min_volume: Annotated[int | None, Query(ge=0)] = None,
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
