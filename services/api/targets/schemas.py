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
from shared.playbook import (
    DEFAULT_UPLIFT,
    PeriodKind,
)

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
