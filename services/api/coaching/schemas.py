"""Answers of the coaching routes: the driver model, the best time to call, the diagnosis
of a target behind, and anomalies. KPI values are typed ``Any`` as in
``services.api.metrics.schemas``: each keeps its unit's JSON type."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.api.metrics.schemas import Bounds
from services.api.targets.schemas import PacingOut, TargetOut


class DriverRow(BaseModel):
    driver: str
    name_zh: str
    value: Any
    reference: Any
    log_share: float | None = Field(description="The driver's exact term in ln(result / reference)")
    share_of_gap: float | None
    question: str


class DriversResponse(BaseModel):
    scope: dict[str, str] = Field(description="agent_id or team_id")
    from_: str = Field(alias="from")
    to: str
    reference: dict[str, Any] = Field(
        description="kind (team_median, previous_period, target) and what it was taken over"
    )
    result_kind: Literal["revenue", "margin"]
    result: str | None
    reference_result: str | None
    log_gap: float | None
    drivers: list[DriverRow]
    ranked_by_cost: list[str]


class BestTimeCell(BaseModel):
    weekday: int = Field(description="1 = Monday")
    hour: int
    dials: int
    connects: int
    leads_dialed: int
    leads_reached: int
    connect_rate: float | None
    contact_rate: float | None


class BestTimeResponse(BaseModel):
    from_: str = Field(alias="from")
    to: str
    timezone: str
    cells: list[BestTimeCell]


class Cause(BaseModel):
    rank: int
    cause: str
    kind: Literal["driver", "funnel", "history"]
    question: str
    impact: Any = Field(description="The shortfall at the period's end this cause explains")
    detail: dict[str, Any]


class ImpliedDriver(BaseModel):
    driver: str
    name_zh: str
    value: Any
    implied: Any = Field(description="The value the target implies, the others as the peers'")
    log_share: float | None
    share_of_gap: float | None
    question: str


class DriverLens(BaseModel):
    reference: str
    log_gap: float | None
    rows: list[ImpliedDriver]


class DiagnosisResponse(BaseModel):
    target: TargetOut
    as_of: str
    pacing: PacingOut
    shortfall_at_period_end: Any
    causes: list[Cause] = Field(description="Ordered by impact, largest first")
    drivers: DriverLens
    funnel: dict[str, Any]
    history: dict[str, Any]


class AnomalousKpi(BaseModel):
    kpi: str
    today: Any
    baseline: list[Any]
    baseline_mean: Any
    spread: Any
    z: float
    direction: Literal["above", "below"]
    far: bool


class AgentAnomalies(BaseModel):
    agent_id: str
    team_id: str | None
    kpis: list[AnomalousKpi]


class AnomaliesResponse(BaseModel):
    as_of: str
    today: Bounds
    baseline_days: list[str]
    rule: str
    agents: list[AgentAnomalies]
