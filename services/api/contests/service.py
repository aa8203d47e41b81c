"""Contests: their rules in the ``contest`` table, their standings read from the KPI tables
with the leaderboard's own ranking (``MetricsService.ranked``), so that a contest and the
leaderboard over the same range and teams never disagree.

A key limited to teams sees a contest when one of the contest's teams is its own, and sees
it as if only its own teams took part: the standings count only the records naming them,
and the other teams are never named. :func:`contest_standings` is what other parts (the
chat digests) call for a contest's current standings and leader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, insert, select

from services.api.contests.schemas import ContestStatus, NewContest
from services.api.metrics import queries
from services.api.metrics.periods import FIRST_YEAR, LAST_YEAR, Granularity, TimeRange
from services.api.metrics.queries import Filters, KeyTeams, Query
from services.api.metrics.service import MetricsService, check_rankable, present
from services.api.settings import ApiSettings
from services.api.targets.repository import who
from shared.auth import Principal
from shared.errors import InvalidInput, NotFound
from shared.kpis import RATIO_BY_KEY, volume_key
from shared.models import contest
from shared.timeutil import as_utc

# The longest contest: a year and a day, so that a yearly contest fits in any year.
MAX_LENGTH = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class Contest:
    contest_id: int
    name: str
    kpi: str
    scope: str
    team_ids: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    min_volume: int
    ascending: bool
    prize: str | None
    created_at: datetime
    created_by: str

    def status(self, now: datetime) -> ContestStatus:
        if now < self.starts_at:
            return "scheduled"
        return "running" if now < self.ends_at else "ended"

    def visible_teams(self, key_teams: KeyTeams) -> tuple[str, ...]:
        """The contest's teams a key may read (all of them for a key of every team)."""
        if key_teams is None:
            return self.team_ids
        return tuple(t for t in self.team_ids if t in key_teams)


@dataclass(frozen=True, slots=True)
class Standings:
    """A contest's standings as of a moment, as a reader limited to ``key_teams`` sees it."""

    contest: Contest
    teams: tuple[str, ...]
    as_of: datetime
    status: ContestStatus
    # Each competitor: rank, agent_id (agents' contests), team_id, value, volume; best first.
    rows: list[dict[str, Any]]

    @property
    def leaders(self) -> list[dict[str, Any]]:
        """Rank 1 now: several on a tie, none before anyone is ranked."""
        return [row for row in self.rows if row["rank"] == 1]

    @property
    def winners(self) -> list[dict[str, Any]] | None:
        """The leaders once the contest has ended; None before."""
        return self.leaders if self.status == "ended" else None


def _contest(row: Any) -> Contest:
    return Contest(
        contest_id=row.contest_id,
        name=row.name,
        kpi=row.kpi,
        scope=row.scope,
        team_ids=tuple(row.team_ids.split(",")),
        starts_at=as_utc(row.starts_at),
        ends_at=as_utc(row.ends_at),
        min_volume=row.min_volume,
        ascending=bool(row.ascending),
        prize=row.prize,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
    )


def _moment(name: str, value: datetime | None) -> datetime:
    if value is None or value.tzinfo is None:
        raise InvalidInput(
            f"{name} needs a UTC offset, e.g. 2026-12-01T09:00:00+08:00",
            details=[{"field": name, "message": "RFC 3339 with offset"}],
        )
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise InvalidInput(
            f"{name} must be in the years {FIRST_YEAR}–{LAST_YEAR}",
            details=[{"field": name, "message": f"{FIRST_YEAR}–{LAST_YEAR}"}],
        )
    if value.second or value.microsecond:
        # The counters are kept per minute: a contest starting mid-minute cannot be counted.
        raise InvalidInput(
            f"{name} must be a whole minute (the counters' resolution)",
            details=[{"field": name, "message": "seconds must be 0"}],
        )
    return value.astimezone(UTC)


def create_contest(
    connection: Connection,
    settings: ApiSettings,
    new: NewContest,
    starts_at: datetime | None,
    ends_at: datetime | None,
    admin: Principal,
) -> Contest:
    """Check and store a contest; 422 names the field at fault."""
    kpi = new.kpi.strip()
    try:
        check_rankable(kpi)
    except InvalidInput as exc:
        raise InvalidInput(
            exc.message,
            details=[{"field": "kpi", "message": "a KPI key /v1/leaderboard ranks by"}],
        ) from exc
    start, end = _moment("starts_at", starts_at), _moment("ends_at", ends_at)
    if end <= start:
        raise InvalidInput(
            "ends_at must be after starts_at",
            details=[{"field": "ends_at", "message": "after starts_at"}],
        )
    if end - start > MAX_LENGTH:
        raise InvalidInput(
            "a contest lasts at most 366 days",
            details=[{"field": "ends_at", "message": "at most 366 days after starts_at"}],
        )
    teams = tuple(dict.fromkeys(new.team_ids))
    if new.scope == "teams" and len(teams) < 2:
        raise InvalidInput(
            "teams compete against each other: name at least two teams",
            details=[{"field": "team_ids", "message": "at least two teams"}],
        )
    min_volume = new.min_volume
    if min_volume is None:
        min_volume = settings.leaderboard_min_volume if kpi in RATIO_BY_KEY else 0
    now = datetime.now(UTC)
    contest_id = connection.execute(
        insert(contest).values(
            name=new.name,
            kpi=kpi,
            scope=new.scope,
            team_ids=",".join(teams),
            starts_at=start,
            ends_at=end,
            min_volume=min_volume,
            ascending=new.order == "asc",
            prize=new.prize,
            created_at=now,
            created_by=who(connection, admin)[0],
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    return get_contest(connection, int(contest_id), key_teams=None)


def get_contest(connection: Connection, contest_id: int, *, key_teams: KeyTeams) -> Contest:
    """A contest the key may see; one outside its teams is the same 404 as an unknown id."""
    row = connection.execute(select(contest).where(contest.c.contest_id == contest_id)).first()
    found = _contest(row) if row is not None else None
    if found is None or not found.visible_teams(key_teams):
        raise NotFound(f"no contest {contest_id}")
    return found


def list_contests(
    connection: Connection,
    *,
    key_teams: KeyTeams,
    status: ContestStatus | None = None,
    now: datetime | None = None,
) -> list[Contest]:
    """The contests the key may see, newest start first, optionally of one status."""
    now = now or datetime.now(UTC)
    rows = connection.execute(
        select(contest).order_by(contest.c.starts_at.desc(), contest.c.contest_id.desc())
    )
    found = [_contest(row) for row in rows]
    return [
        c
        for c in found
        if c.visible_teams(key_teams) and (status is None or c.status(now) == status)
    ]


def delete_contest(connection: Connection, contest_id: int) -> Contest:
    found = get_contest(connection, contest_id, key_teams=None)
    connection.execute(delete(contest).where(contest.c.contest_id == contest_id))
    return found


def standings(
    connection: Connection,
    settings: ApiSettings,
    subject: Contest,
    *,
    key_teams: KeyTeams,
    now: datetime | None = None,
) -> Standings:
    """``subject``'s standings now, from the same tables and ranking as the leaderboard."""
    now = now or datetime.now(UTC)
    teams = subject.visible_teams(key_teams)
    status = subject.status(now)
    rows: list[dict[str, Any]] = []
    if status != "scheduled" and teams:
        group = "agent" if subject.scope == "agents" else "team"
        zone_name = settings.timezone_for(teams)
        query = Query(
            (group,),
            Granularity.none,
            TimeRange(subject.starts_at, subject.ends_at),
            Filters(team_ids=teams, key_teams=key_teams),
            ZoneInfo(zone_name),
            settings.week_start,
            native=zone_name == settings.timezone,
        )
        ranked = MetricsService(settings).ranked(
            connection, subject.kpi, query, subject.min_volume, subject.ascending
        )
        agent_teams = queries.agent_teams(connection, key_teams) if group == "agent" else {}
        volume = volume_key(subject.kpi)
        for competitor, (rank, value, row_volume) in ranked.items():
            row: dict[str, Any] = {"rank": rank}
            if group == "agent":
                row["agent_id"] = competitor
                row["team_id"] = agent_teams.get(competitor)
            else:
                row["team_id"] = competitor
            row["value"] = present(subject.kpi, value)
            row["volume"] = present(volume, row_volume)
            rows.append(row)
        rows.sort(key=lambda r: (r["rank"], r.get("agent_id") or r["team_id"] or ""))
    return Standings(subject, teams, now, status, rows)


def contest_standings(
    connection: Connection,
    settings: ApiSettings,
    contest_id: int,
    *,
    key_teams: KeyTeams = None,
    now: datetime | None = None,
) -> Standings:
    """A contest's current standings and its leader(s) (``Standings.leaders``; the winners
    once it has ended), for any part of the API that announces them. 404 (``NotFound``) for
    an unknown contest, or one outside ``key_teams``."""
    subject = get_contest(connection, contest_id, key_teams=key_teams)
    return standings(connection, settings, subject, key_teams=key_teams, now=now)


def present_contest(
    subject: Contest, settings: ApiSettings, *, key_teams: KeyTeams, now: datetime
) -> dict[str, Any]:
    """A contest as the API shows it to a key: only the key's own teams named."""
    teams = subject.visible_teams(key_teams)
    zone_name = settings.timezone_for(teams)
    zone = ZoneInfo(zone_name)
    return {
        "contest_id": subject.contest_id,
        "name": subject.name,
        "kpi": subject.kpi,
        "scope": subject.scope,
        "team_ids": list(teams),
        "starts_at": subject.starts_at.astimezone(zone).isoformat(),
        "ends_at": subject.ends_at.astimezone(zone).isoformat(),
        "timezone": zone_name,
        "min_volume": subject.min_volume,
        "order": "asc" if subject.ascending else "desc",
        "prize": subject.prize,
        "status": subject.status(now),
        "created_at": subject.created_at.astimezone(zone).isoformat(),
        "created_by": subject.created_by,
    }


def present_standings(
    found: Standings, settings: ApiSettings, key_teams: KeyTeams
) -> dict[str, Any]:
    zone = ZoneInfo(settings.timezone_for(found.teams))
    return {
        **present_contest(found.contest, settings, key_teams=key_teams, now=found.as_of),
        "as_of": found.as_of.astimezone(zone).isoformat(),
        "standings": found.rows,
        "leaders": found.leaders,
        "winners": found.winners,
    }
