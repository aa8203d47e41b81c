"""HTTP routes of contests: created and deleted with an admin key, read with a read key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path

from services.api.contests import schemas
from services.api.contests.schemas import ContestStatus
from services.api.contests.service import (
    contest_standings,
    create_contest,
    delete_contest,
    list_contests,
    present_contest,
    present_standings,
)
from services.api.deps import Admin, Db, Reader, Settings, WriteDb, parse_timestamp
from shared.errors import ERROR_RESPONSES, ErrorBody

router = APIRouter(responses=ERROR_RESPONSES)
ContestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The contest's id")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such contest"}
}


@router.post("/v1/contests", status_code=201, response_model=schemas.ContestOut, tags=["contests"])
def post_contest(
    new: schemas.NewContest, settings: Settings, connection: WriteDb, admin: Admin
) -> dict[str, Any]:
    """Create a contest. 422 for a KPI agents cannot be ranked by, a time without offset or
    not on a whole minute, an end not after the start, a teams contest of fewer than two
    teams, or a name or prize that is too long, unprintable or holds personal data."""
    created = create_contest(
        connection,
        settings,
        new,
        parse_timestamp("starts_at", new.starts_at),
        parse_timestamp("ends_at", new.ends_at),
        admin,
    )
    return present_contest(created, settings, key_teams=None, now=datetime.now(UTC))


@router.get("/v1/contests", response_model=schemas.ContestList, tags=["contests"])
def get_contests(
    reader: Reader, settings: Settings, connection: Db, status: ContestStatus | None = None
) -> dict[str, Any]:
    """The contests (of the key's teams, for a key limited to teams), newest start first."""
    now = datetime.now(UTC)
    found = list_contests(connection, key_teams=reader.team_ids, status=status, now=now)
    return {
        "contests": [
            present_contest(c, settings, key_teams=reader.team_ids, now=now) for c in found
        ]
    }


@router.get(
    "/v1/contests/{contest_id}",
    response_model=schemas.ContestWithStandings,
    tags=["contests"],
    responses=_NOT_FOUND,
)
def get_one_contest(
    contest_id: ContestId, reader: Reader, settings: Settings, connection: Db
) -> dict[str, Any]:
    """A contest with its live standings, ranked as ``/v1/leaderboard`` ranks (ties share a
    rank: 1, 2, 2, 4; below the minimum volume not ranked), its leaders, and its winners
    once it has ended. A key limited to teams sees only its own teams' competitors."""
    found = contest_standings(connection, settings, contest_id, key_teams=reader.team_ids)
    return present_standings(found, settings, reader.team_ids)


@router.delete(
    "/v1/contests/{contest_id}",
    response_model=schemas.ContestOut,
    tags=["contests"],
    responses=_NOT_FOUND,
)
def remove_contest(
    contest_id: ContestId, settings: Settings, connection: WriteDb, _admin: Admin
) -> dict[str, Any]:
    """Delete a contest (its numbers stay: they are the KPI tables')."""
    deleted = delete_contest(connection, contest_id)
    return present_contest(deleted, settings, key_teams=None, now=datetime.now(UTC))
