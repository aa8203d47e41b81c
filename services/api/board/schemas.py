"""Response bodies of the wallboard's routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

AgentStateName = Literal["available", "on_call", "wrap_up", "paused", "logged_out"]


class CallInProgress(BaseModel):
    call_id: str
    started_at: str
    seconds: int


class AgentToday(BaseModel):
    dials: int
    connects: int
    sales: int
    revenue: str


class AgentNow(BaseModel):
    agent_id: str
    team_id: str | None
    state: AgentStateName
    since: str | None
    reason: str | None
    call: CallInProgress | None
    today: AgentToday
    last_event_at: str | None
    quiet: bool


class AgentsNowResponse(BaseModel):
    as_of: str
    timezone: str
    quiet_after_seconds: int
    agents: list[AgentNow]


class PaceHour(BaseModel):
    hour: int
    sales: int
    revenue: str
    yesterday_sales: int
    yesterday_revenue: str
    needed_sales: float | None
    needed_revenue: str | None


class PaceTarget(BaseModel):
    sales: float | None
    revenue: str | None


class PaceHourlyResponse(BaseModel):
    date: str
    timezone: str
    hours: list[PaceHour]
    target: PaceTarget


class SaleOut(BaseModel):
    order_id: str
    agent_id: str
    team_id: str | None
    campaign_id: str | None
    amount: str
    occurred_at: str
