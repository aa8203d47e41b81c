"""What ingest reads from the database: the key table (``shared.auth``) and the roster.

The roster (``agent_team``, kept by the aggregator) is read only for keys limited to teams,
to refuse an event that would move another team's agent.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from shared.models import agent_team

_CHUNK = 1000


def roster_teams(connection: Connection, agent_ids: Iterable[str]) -> dict[str, str]:
    """The current team of each of ``agent_ids`` the roster knows."""
    wanted = sorted(set(agent_ids))
    teams: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = connection.execute(
            select(agent_team.c.agent_id, agent_team.c.team_id).where(
                agent_team.c.agent_id.in_(wanted[start : start + _CHUNK])
            )
        )
        teams.update({row.agent_id: row.team_id for row in rows})
    return teams
