"""What the tables can hold, checked per event before its batch's transaction.

A value the database refuses fails the whole batch's transaction, and the member can find
the record only by bisecting the batch into smaller transactions: a few dozen transactions
per refused record. Text the tables cannot store (longer than its column, or with a NUL
character, which PostgreSQL refuses in any text) and numbers beyond the counters' range are
the common cases, and are found here instead, from the column definitions in
``shared/models.py``, so that a flood of such records is set aside as fast as undecodable
ones: text per event, counters in the merged batch (the merge's in-memory bisection then
finds the events). What the database refuses otherwise is still found by bisecting
transactions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column

from services.aggregator.batch import BatchDelta
from shared.models import (
    agent_state_change,
    disposition_minute,
    entity_state,
    kpi_minute,
    lead_fact,
    stage_change,
)


def _length(column: Column[Any]) -> int:
    return int(column.type.length)  # type: ignore[attr-defined]


# Each field of an event that lands in a column of limited length, and the shortest such
# column.
FIELD_LENGTHS: dict[str, int] = {
    "agent_id": _length(kpi_minute.c.agent_id),
    "team_id": _length(kpi_minute.c.team_id),
    "campaign_id": _length(kpi_minute.c.campaign_id),
    "lead_id": _length(lead_fact.c.lead_id),
    "event_id": min(_length(agent_state_change.c.event_id), _length(stage_change.c.event_id)),
    "disposition": _length(disposition_minute.c.disposition),
    "stage": _length(stage_change.c.stage),
    "state": _length(agent_state_change.c.state),
}
# An entity's key names its state and, for a lead's facts, their source.
KEY_LENGTH = min(_length(entity_state.c.key), _length(lead_fact.c.source))
# Counters are BigInteger columns, in the stored units of shared.kpis.STORAGE_SCALE.
assert isinstance(kpi_minute.c.dials.type, BigInteger)
COUNTER_MAX = 2**63 - 1


def does_not_fit(
    event: dict[str, Any], raw: bytes | None = None, key: str | None = None
) -> str | None:
    """Why the tables cannot hold ``event``, whose entity is ``key``; ``None`` when they can
    (as far as text goes).

    ``raw``: the JSON ``event`` was decoded from. JSON writes a NUL only as ``\\u0000``, so
    text without that escape needs no search for one.
    """
    for field, limit in FIELD_LENGTHS.items():
        value = event.get(field)
        if isinstance(value, str) and len(value) > limit:
            return f"{field} is longer than the tables take ({len(value)} > {limit} characters)"
    if raw is None or b"\\u0000" in raw:
        for field, value in event.items():
            if isinstance(value, str) and "\x00" in value:
                return f"{field} holds a NUL character"
    if key is not None and len(key) > KEY_LENGTH:
        return f"its entity key is longer than the tables take ({len(key)} > {KEY_LENGTH})"
    return None


def counter_out_of_range(delta: BatchDelta) -> str | None:
    """Why the tables cannot hold the counters of ``delta``; ``None`` when they can."""
    for rows in (delta.minute_counters, delta.day_counters):
        for values in rows.values():
            for name, value in values.items():
                if not -COUNTER_MAX <= value <= COUNTER_MAX:
                    return f"{name} beyond the counters' range ({value} stored units)"
    return None
