"""HTTP routes for coaching: the driver model, the best time to call, the diagnosis of a
target behind, and anomalies."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.api.coaching import schemas
from services.api.coaching.analysis import best_time_to_call, driver_model
from services.api.coaching.anomalies import find_anomalies
from services.api.coaching.diagnosis import diagnose
from services.api.deps import (
    AsOf,
    Db,
    From,
    Ids,
    Reader,
    Settings,
    filters_for,
    judged_at,
    one_id,
    request_time,
)
from services.api.metrics.periods import Period
from services.api.metrics.queries import Filters
from services.api.numbers import parse_decimal
from services.api.targets.schemas import TARGET_NOT_FOUND, TargetId
from services.api.targets.service import get_readable_target
from shared.errors import ERROR_RESPONSES
from shared.kpis import DRIVERS

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/drivers", response_model=schemas.DriversResponse, tags=["coaching"])
def get_drivers(
    request: Request,
    reader: Reader,
    settings: Settings,
    connection: Db,
    agent_id: str | None = None,
    team_id: str | None = None,
    reference: str = "team_median",
    period: Period | None = None,
    from_: From = None,
    to: str | None = None,
) -> dict[str, Any]:
    """The performance-driver model for an agent or team against a reference.

    ``reference``: ``team_median`` (the median of each driver over the agent's team, or over
    all teams for a team; for a key limited to teams, over those teams), ``previous_period``
    (the same scope, the period of equal length before), or ``target`` (give
    ``target_<driver>`` for each driver). Each driver's ``log_share`` is its exact term in
    ``ln(result / reference)``; ``ranked_by_cost`` lists the drivers that pull the result
    below the reference, the costliest first.
    """
    agent_id, team_id = one_id("agent_id", agent_id), one_id("team_id", team_id)
    if team_id is not None:
        filters_for(reader, None, [team_id], None)
    targets: dict[str, Decimal] = {}
    for driver in DRIVERS:
        raw = request.query_params.get(f"target_{driver.key}")
        if raw is not None:
            targets[driver.key] = parse_decimal(f"target_{driver.key}", raw)
    rng = request_time(settings, Filters(key_teams=reader.team_ids), period, from_, to).range
    # A key limited to some teams reads an agent's records in those teams only: an agent of
    # another team answers as one without calls.
    return driver_model(
        connection,
        settings,
        rng,
        agent_id=agent_id,
        team_id=team_id,
        reference=reference,
        targets=targets,
        key_teams=reader.team_ids,
    )


@router.get("/v1/best-time", response_model=schemas.BestTimeResponse, tags=["coaching"])
def get_best_time(
    reader: Reader,
    settings: Settings,
    connection: Db,
    period: Period | None = None,
    from_: From = None,
    to: str | None = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
) -> dict[str, Any]:
    """Connect and contact rate by local weekday (1 = Monday) and hour of day."""
    filters = filters_for(reader, None, team_id, campaign_id)
    when = request_time(
        settings,
        Filters(key_teams=reader.team_ids),
        period or (None if from_ or to else Period.mtd),
        from_,
        to,
    )
    cells = best_time_to_call(connection, settings, when.range, filters)
    return {**when.bounds(), "cells": cells}


@router.get(
    "/v1/targets/{target_id}/diagnosis",
    response_model=schemas.DiagnosisResponse,
    tags=["coaching"],
    responses=TARGET_NOT_FOUND,
)
def get_diagnosis(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db, as_of: AsOf = None
) -> dict[str, Any]:
    """Why a result target is behind: driver gaps against the target-implied drivers, leads
    accumulated in C/B against what is still needed, and the target against the best past
    periods — in one list ordered by impact, each with the playbook's question."""
    subject = get_readable_target(connection, reader, target_id)
    return diagnose(connection, settings, subject, judged_at(as_of), key_teams=reader.team_ids)


@router.get("/v1/anomalies", response_model=schemas.AnomaliesResponse, tags=["coaching"])
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
    return find_anomalies(connection, settings, judged_at(as_of), filters, everything=all_kpis)
