"""What ingest reads from the database: the key table (``shared.auth``), the roster and the
teams of entities.

Both are read only for keys limited to teams, to refuse an event that would move another
team's agent, call or order into the key's teams (or change it from there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, select

from shared.models import agent_team, entity_state

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


def entity_teams(connection: Connection, keys: Iterable[str]) -> dict[str, frozenset[str]]:
    """The teams the stored events of each entity (``call:<id>``, ``order:<id>``...) name."""
    wanted = sorted(set(keys))
    teams: dict[str, frozenset[str]] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = connection.execute(
            select(entity_state.c.key, entity_state.c.state).where(
                entity_state.c.key.in_(wanted[start : start + _CHUNK])
            )
        )
        for row in rows:
            named = _teams_in_state(orjson.loads(row.state))
            if named:
                teams[row.key] = named
        # Entities without a stored state are new: nobody's yet.
    return teams


def _teams_in_state(state: dict[str, Any]) -> frozenset[str]:
    """The team ids in an entity's state as the aggregator keeps it (``facts.merge``).

    Registers are ``[value, ts, event_id]``; a survey's value is ``[score, agent, team,
    campaign, ts]``, a sale's ``[amount, margin, customer_type, agent, team, campaign, lead,
    ts]``, a payment ``[amount, ts, agent, team, campaign]``; a quote or stage change keeps
    its event.
    """
    registers: dict[str, Any] = state.get("r", {})
    named: list[Any] = []
    if "team_id" in registers:
        named.append(registers["team_id"][0])
    if "survey" in registers:
        named.append(registers["survey"][0][2])
    if "sale" in registers:
        named.append(registers["sale"][0][4])
    named.extend(payment[3] for payment in state.get("payments", {}).values())
    if isinstance(state.get("event"), dict):
        named.append(state["event"].get("team_id"))
    return frozenset(team for team in named if isinstance(team, str) and team)
