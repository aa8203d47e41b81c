"""Answers of the metrics and leaderboard routes.

A KPI's value is given in its unit: money as a decimal string (cents), counts as integers,
ratios and seconds as numbers; it is typed ``Any`` so that each keeps its own JSON type.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MetricsResponse(BaseModel):
    from_: str = Field(alias="from")
    to: str
    timezone: str
    granularity: str
    metrics: list[str]
    rows: list[dict[str, Any]]


class LeaderboardRow(BaseModel):
    rank: int
    agent_id: str
    team_id: str | None
    value: Any
    volume: Any
    previous_rank: int | None
    rank_change: int | None


class Bounds(BaseModel):
    """The ``[from, to)`` an answer covers, in its zone's offset."""

    from_: str = Field(alias="from")
    to: str


class LeaderboardResponse(BaseModel):
    metric: str
    from_: str = Field(alias="from")
    to: str
    timezone: str
    min_volume: int
    rows: list[LeaderboardRow]


class DispositionCodeOut(BaseModel):
    """A row of the disposition table: ``campaign_id`` null is the row for every campaign."""

    code: str
    campaign_id: str | None
    name: str
    flags: dict[str, bool]


class DispositionCountOut(BaseModel):
    """Calls whose latest code is ``code``; an unknown code has every flag off."""

    code: str
    calls: int
    known: bool
    name: str | None
    flags: dict[str, bool]


class DispositionRowOut(BaseModel):
    """One row: the group's ids (``agent_id``, ``team_id``, ``campaign_id``) and ``bucket``
    as grouped, the calls with a code, per code and per flag."""

    model_config = ConfigDict(extra="allow")

    calls: int
    dispositions: dict[str, int]
    codes: list[DispositionCountOut]
    flag_calls: dict[str, int]
    unknown_calls: int


class DispositionsResponse(BaseModel):
    from_: str = Field(alias="from")
    to: str
    timezone: str
    granularity: str
    flags: list[str]
    table: list[DispositionCodeOut]
    rows: list[DispositionRowOut]


class AgentRankResponse(BaseModel):
    """One agent's rank, with the agents ranked just above and below it."""

    metric: str
    from_: str = Field(alias="from")
    to: str
    timezone: str
    min_volume: int
    ranked: int = Field(description="How many agents are ranked")
    agent: LeaderboardRow
    rows: list[LeaderboardRow]
