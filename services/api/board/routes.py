"""HTTP routes of the wallboard's reads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.api.board import schemas
from services.api.board.service import agents_now, pace_hourly, utc_now
from services.api.deps import Db, Ids, Reader, Settings, filters_for
from shared.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/agents/now", response_model=schemas.AgentsNowResponse, tags=["wallboard"])
def get_agents_now(
    reader: Reader,
    settings: Settings,
    connection: Db,
    team_id: Ids = None,
    campaign_id: Ids = None,
    agent_id: Ids = None,
) -> dict[str, Any]:
    """Every agent's state now (``available``, ``on_call``, ``wrap_up``, ``paused``,
    ``logged_out``), since when, the reason it gave, the call in progress, today's dials,
    connects, sales and revenue, and whether it has gone quiet: no event for
    ``CALLBOARD_AGENT_QUIET_SECONDS`` while not logged out. Sorted by agent id."""
    filters = filters_for(reader, agent_id, team_id, campaign_id)
    return agents_now(connection, settings, filters, utc_now())


@router.get("/v1/pace/hourly", response_model=schemas.PaceHourlyResponse, tags=["wallboard"])
def get_pace_hourly(
    reader: Reader,
    settings: Settings,
    connection: Db,
    team_id: Ids = None,
    campaign_id: Ids = None,
) -> dict[str, Any]:
    """Today's sales and revenue per local hour (not cumulative) beside yesterday's, and
    the pace today's targets need: each ``sales`` or ``revenue`` target that runs today
    (of the campaigns asked, else the teams, else the floor; the shortest period's when
    several do) spread over its period's working hours (the team's working calendar).
    ``needed_*`` and ``target`` are null where no target applies."""
    filters = filters_for(reader, None, team_id, campaign_id)
    return pace_hourly(connection, settings, filters, utc_now())
