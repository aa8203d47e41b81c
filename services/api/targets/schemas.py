"""Request bodies of the targets routes, and the shapes of their answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, Field

from services.api.numbers import Amount
from services.api.targets.rules import TargetScope
from shared.errors import ErrorBody
from shared.events import PRINTABLE, Id64
from shared.playbook import DEFAULT_UPLIFT, PeriodKind, WorkingCalendar

TargetId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The target's id")]
CalendarName = Annotated[
    str, Path(min_length=1, max_length=64, pattern=PRINTABLE, description="A team id, or *")
]
TARGET_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such target"}
}


class NewTarget(BaseModel):
    """A target: who (scope and its id), which KPI, which period, how much."""

    scope: TargetScope
    scope_id: Id64 | None = Field(
        default=None, description="The agent, team or campaign; none for floor"
    )
    kpi: str = Field(description="A KPI key from kpis.md, e.g. revenue, sales, contact_rate")
    period: PeriodKind
    period_start: str = Field(
        description="The period's first local day, 2026-11-01, or its local midnight with "
        "the deployment's offset, 2026-11-01T00:00:00+08:00"
    )
    value: Amount


class TargetUpdate(BaseModel):
    """A new value, in force from ``effective_from`` (default: now) to the period's end."""

    value: Amount
    effective_from: str | None = Field(
        default=None, description="RFC 3339 with offset; default now"
    )


class SplitRequest(BaseModel):
    """Split a team's (or the floor's) target over agents."""

    uplift: Decimal = Field(default=DEFAULT_UPLIFT, gt=0, le=10, description="1.2 adds 20 %")
    weighting: Literal["equal", "last_period", "given"] = "equal"
    weights: dict[Id64, Annotated[Decimal, Field(ge=0, le=1_000_000_000)]] | None = Field(
        default=None, description="weighting=given: agent id → weight"
    )
    agent_ids: list[Id64] | None = Field(
        default=None, description="The agents to split over; default: the team's roster"
    )
    apply: bool = Field(default=False, description="Create or change the agents' targets")


# ---------------------------------------------------------------------------------------------
# Answers. Values are in the KPI's unit (``services.api.targets.rules.amount``): money as a
# decimal string, counts as integers, ratios as numbers; typed ``Any`` to keep each JSON type.
# Pydantic orders the fields of a model with several bases from the last base to the first:
# the bases below are listed so that the fields come in the order of the answer.


class TargetOut(BaseModel):
    target_id: int
    scope: TargetScope
    scope_id: str | None = Field(description="None for the floor")
    kpi: str
    period: PeriodKind
    period_start: str
    from_: str = Field(alias="from")
    to: str
    value: Any
    created_at: str
    updated_at: str
    deleted_at: str | None


class TargetChange(BaseModel):
    change_id: int
    action: Literal["created", "changed", "split", "deleted"]
    value: Any
    previous_value: Any
    effective_from: str
    changed_at: str
    changed_by: str
    key_id: str | None


class TargetWithHistory(TargetOut):
    history: list[TargetChange]


class TargetList(BaseModel):
    targets: list[TargetOut]


class TargetHistory(BaseModel):
    target_id: int
    history: list[TargetChange]


class PacingOut(BaseModel):
    actual: Any
    value: Any
    elapsed_share: float | None
    expected: Any
    attainment: float | None
    pace: float | None
    projection: Any
    status: Literal["on_track", "at_risk", "behind", "not_started"]


class TargetPacing(TargetOut):
    pacing: PacingOut


class AsOf(BaseModel):
    as_of: str


class TargetPacingAt(TargetPacing, AsOf):
    """A target's pacing at ``as_of``."""


class TeamTargetPacing(TargetPacing):
    team_id: str | None = Field(description="The scope's team, an agent's roster team")


class PacingList(BaseModel):
    as_of: str
    targets: list[TeamTargetPacing]


class SplitShare(BaseModel):
    agent_id: str
    team_id: str | None
    weight: float | None
    value: Any
    target_id: int | None = Field(description="The agent's target, when applied")


class LastPeriod(BaseModel):
    from_: str = Field(alias="from")
    results: dict[str, Any]


class SplitResponse(BaseModel):
    target: TargetOut
    uplift: float
    weighting: Literal["equal", "last_period", "given"]
    total: Any
    last_period: LastPeriod | None = Field(
        default=None, description="weighting=last_period: the results the weights come from"
    )
    shares: list[SplitShare]
    applied: bool


class RankedTarget(BaseModel):
    rank: int
    agent_id: str
    team_id: str | None
    target_id: int


class AttainmentRow(PacingOut, RankedTarget):
    """An agent's rank by attainment, with its pacing."""


class AttainmentLeaderboard(BaseModel):
    kpi: str
    period: PeriodKind
    period_start: str
    as_of: str
    rows: list[AttainmentRow]


class ScoreLineOut(BaseModel):
    kpi: str
    weight: float
    actual: Any
    target: Any
    attainment: float | None
    points: float | None


class ScorecardOut(BaseModel):
    agent_id: str | None = Field(default=None, description="scope=agent")
    team_id: str | None
    kpis: list[ScoreLineOut]
    score: float | None
    missing_targets: list[str]
    rank: int | None


class ScorecardsResponse(BaseModel):
    scope: Literal["agent", "team"]
    period: PeriodKind
    period_start: str
    weights: dict[str, float]
    cap: float
    rows: list[ScorecardOut]


class WorkingCalendars(BaseModel):
    default: WorkingCalendar
    teams: dict[str, WorkingCalendar]


class NamedCalendar(BaseModel):
    name: str
    calendar: WorkingCalendar
