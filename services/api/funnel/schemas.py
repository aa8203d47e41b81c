"""Answers of the funnel routes: leads per stage, and the backward plan of a target."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class FunnelShape(BaseModel):
    shape: str
    findings: list[str]
    checks: dict[str, float | None]


class FunnelRow(BaseModel):
    """A group's funnel; ``agent_id`` or ``team_id`` as grouped."""

    agent_id: str | None = None
    team_id: str | None = None
    now: dict[str, int] = Field(description="Leads now in each stage")
    won: int
    reached: dict[str, int] = Field(description="Leads that reached at least each stage")
    conversion: dict[str, float | None]
    shape: FunnelShape


class FunnelResponse(BaseModel):
    as_of: str
    rates_from: str
    rates_to: str
    group_by: list[str]
    rows: list[FunnelRow]


class WeekNeeds(BaseModel):
    target_left: Any
    share_of_remaining_time: float | None
    result: Any
    leads: dict[str, int | None] = Field(description="Leads needed per stage")


class WeekActual(BaseModel):
    result: Any
    leads: dict[str, int]


class WeekPlan(BaseModel):
    week_start: str
    week_end: str
    state: Literal["done", "current", "planned"]
    working_hours: float
    planned_at: str
    plan: WeekNeeds
    rates_used: dict[str, float | None]
    result_per_won_lead: Any
    actual: WeekActual | None = Field(description="None for a week not started")


class PlanResponse(BaseModel):
    target_id: int
    kpi: str
    scope: str
    scope_id: str | None
    as_of: str
    rates_window_days: int
    weeks: list[WeekPlan]
