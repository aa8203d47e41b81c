"""Request and response bodies of the contest routes."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from shared.auth import TeamId
from shared.identifiers import invisible_character_problem, looks_like_phone, personal_data_problem

ContestScope = Literal["agents", "teams"]
ContestStatus = Literal["scheduled", "running", "ended"]
# The most volume a contest may ask for: far above any floor's, inside the stored integer.
MAX_MIN_VOLUME = 10**9
# Runs of digits and phone punctuation inside free text, each checked as a phone number.
_NUMBER_RUN = re.compile(r"[+(\d][\d\s\-./()]{5,}\d")


def _free_text(value: str) -> str:
    """Shown on wallboards and in chat messages: nothing a terminal would act on, and no
    phone number or e-mail address anywhere in it."""
    problem = invisible_character_problem(value) or personal_data_problem(value)
    if problem is None and any(looks_like_phone(m) for m in _NUMBER_RUN.findall(value)):
        problem = "holds a phone number; contest texts must not carry personal data"
    if problem is not None:
        raise ValueError(problem)
    return value


ContestName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, strip_whitespace=True),
    AfterValidator(_free_text),
]
PrizeText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500, strip_whitespace=True),
    AfterValidator(_free_text),
]


class NewContest(BaseModel):
    """A contest: who competes (agents of ``team_ids``, or those teams against each other),
    by which KPI, from when to when."""

    name: ContestName
    kpi: str = Field(
        max_length=64, description="A KPI key from kpis.md agents can be ranked by, e.g. sales"
    )
    scope: ContestScope = Field(description="agents: the teams' agents; teams: team vs team")
    team_ids: list[TeamId] = Field(min_length=1, max_length=200)
    starts_at: str = Field(max_length=64, description="RFC 3339 with offset, a whole minute")
    ends_at: str = Field(max_length=64, description="RFC 3339 with offset, a whole minute")
    min_volume: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MIN_VOLUME,
        description="Volume (a ratio's denominator) needed to be ranked; default as the "
        "leaderboard's (CALLBOARD_LEADERBOARD_MIN_VOLUME for ratios, else 0)",
    )
    order: Literal["desc", "asc"] = Field(default="desc", description="asc: lowest wins")
    prize: PrizeText | None = None


class StandingOut(BaseModel):
    """One competitor: ``agent_id`` (with the team its records named) or ``team_id``."""

    rank: int
    agent_id: str | None = None
    team_id: str | None
    value: Any
    volume: Any


class ContestOut(BaseModel):
    contest_id: int
    name: str
    kpi: str
    scope: ContestScope
    team_ids: list[str]
    starts_at: str
    ends_at: str
    timezone: str
    min_volume: int
    order: Literal["desc", "asc"]
    prize: str | None
    status: ContestStatus
    created_at: str
    created_by: str


class ContestWithStandings(ContestOut):
    as_of: str
    standings: list[StandingOut]
    leaders: list[StandingOut] = Field(description="Rank 1 now (several on a tie)")
    winners: list[StandingOut] | None = Field(
        description="Rank 1 once the contest has ended (several on a tie); null before"
    )


class ContestList(BaseModel):
    contests: list[ContestOut]
