"""HTTP routes of the funnel: leads per stage with the conversion between stages, and the
backward plan of a result target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter

from services.api.deps import (
    AsOf,
    Db,
    From,
    Ids,
    Reader,
    Settings,
    filters_for,
    judged_at,
    parse_timestamp,
)
from services.api.funnel import schemas
from services.api.funnel.service import funnel_rows, present_row, target_plan
from services.api.metrics.periods import Period, TimeRange, resolve_range
from services.api.targets.schemas import TARGET_NOT_FOUND, TargetId
from services.api.targets.service import get_readable_target
from shared.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get(
    "/v1/funnel",
    response_model=schemas.FunnelResponse,
    response_model_exclude_unset=True,
    tags=["funnel"],
)
def get_funnel(
    reader: Reader,
    settings: Settings,
    connection: Db,
    group_by: Literal["none", "agent", "team"] = "none",
    period: Period | None = None,
    from_: From = None,
    to: str | None = None,
    as_of: AsOf = None,
    agent_id: Ids = None,
    team_id: Ids = None,
    campaign_id: Ids = None,
) -> dict[str, Any]:
    """Leads now in each stage (or at ``as_of``), the stage-to-next conversion over the
    period (default: the four weeks before), and the funnel's shape: healthy, pile-up in
    C, too few in C, too few new leads at the top."""
    moment = judged_at(as_of) if as_of else None
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


@router.get(
    "/v1/targets/{target_id}/plan",
    response_model=schemas.PlanResponse,
    tags=["funnel"],
    responses=TARGET_NOT_FOUND,
)
def get_plan(
    target_id: TargetId, reader: Reader, settings: Settings, connection: Db, as_of: AsOf = None
) -> dict[str, Any]:
    """The backward plan (倒推法) of a result target (revenue, margin, sales, leads_won):
    leads needed per funnel stage per week, each started week planned at its start from the
    conversion seen over the four weeks before, with the week's actuals beside it."""
    subject = get_readable_target(connection, reader, target_id)
    return target_plan(connection, settings, subject, judged_at(as_of), key_teams=reader.team_ids)
