"""The aggregator's reads and writes. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select, text, tuple_

from services.aggregator.batch import BatchBuilder, BatchDelta
from services.aggregator.facts import State, parse_utc_text, scope_dict
from services.aggregator.leadfacts import write_lead_facts
from services.aggregator.upserts import chunks, copy_insert, insert_for, upsert
from shared.db import COMMITS_CHANNEL
from shared.kpis import COUNTER_KEYS
from shared.models import (
    agent_state_change,
    agent_team,
    consumer_offset,
    disposition_day,
    disposition_minute,
    entity_state,
    kpi_day,
    kpi_hour,
    kpi_minute,
    lead_stage,
    sale_feed,
    stage_change,
)
from shared.timeutil import week_start

# Two members that briefly process the same entity (during a rebalance, or a call whose
# events went to two partitions) take turns on it: each locks the rows of its entities, an
# entity not stored yet through a placeholder row with this state. Row locks, not advisory
# locks: they take no room in the lock table, so a batch locks exactly its own entities and
# members working on different ones never wait for each other.
_PLACEHOLDER = "null"
# A batch's lead counts are worked out from the facts its leads had before it, so two
# members whose batches share a lead take turns for the last step of their batches: each
# lead has a row of its own (kept, with the placeholder state) that the batch locks, after
# its entities. Every member takes its locks in ascending order within each step, so no two
# wait for each other in a circle.
_LEAD_KEY_PREFIX = "lead:"


def claim_offsets(connection: Connection, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Lock and return the next offset to apply for each partition (0 when none stored)."""
    partitions = sorted(set(partitions))
    if not partitions:
        return {}
    now = datetime.now(UTC)
    stmt = insert_for(connection, consumer_offset).on_conflict_do_nothing()
    connection.execute(
        stmt,
        [{"topic": topic, "partition": p, "next_offset": 0, "updated_at": now} for p in partitions],
    )
    query = (
        select(consumer_offset.c.partition, consumer_offset.c.next_offset)
        .where(consumer_offset.c.topic == topic, consumer_offset.c.partition.in_(partitions))
        .order_by(consumer_offset.c.partition)
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.partition: row.next_offset for row in connection.execute(query)}


def stored_offsets(connection: Connection, topic: str) -> dict[int, int]:
    query = select(consumer_offset.c.partition, consumer_offset.c.next_offset).where(
        consumer_offset.c.topic == topic
    )
    return {row.partition: row.next_offset for row in connection.execute(query)}


def save_offsets(connection: Connection, topic: str, next_offsets: dict[int, int]) -> None:
    now = datetime.now(UTC)
    for partition, offset in sorted(next_offsets.items()):
        connection.execute(
            consumer_offset.update()
            .where(consumer_offset.c.topic == topic, consumer_offset.c.partition == partition)
            .values(next_offset=offset, updated_at=now)
        )


def announce_commit(connection: Connection, topic: str, events: int) -> None:
    """Tell listeners (the API's live streams) that this transaction changed the numbers.

    PostgreSQL delivers the notification when the transaction commits, never before.
    """
    if connection.dialect.name != "postgresql":
        return
    payload = orjson.dumps(
        {"topic": topic, "events": events, "at": datetime.now(UTC).isoformat()}
    ).decode()
    connection.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": COMMITS_CHANNEL, "payload": payload},
    )


def lock_and_load_states(connection: Connection, keys: Sequence[str]) -> dict[str, State]:
    """Lock the entities ``keys`` until the commit; their stored states (none: not stored).

    An entity not stored yet gets a placeholder row, locked like the others; the caller
    writes its state or drops the placeholder (``drop_placeholders``).
    """
    if connection.dialect.name != "postgresql":
        return load_states(connection, keys)
    states: dict[str, State] = {}
    for key, state in _lock_rows(connection, keys):
        if state != _PLACEHOLDER:
            states[key] = orjson.loads(state)
    return states


def drop_placeholders(connection: Connection, keys: Sequence[str]) -> None:
    """Remove the placeholders of ``keys`` (entities locked whose state was not written)."""
    if connection.dialect.name != "postgresql" or not keys:
        return
    connection.execute(
        text("DELETE FROM entity_state WHERE key = ANY(CAST(:keys AS text[])) AND state = :p"),
        {"keys": list(keys), "p": _PLACEHOLDER},
    )


def _lock_rows(connection: Connection, keys: Iterable[str]) -> list[tuple[str, str]]:
    """Row locks on the ``entity_state`` rows of ``keys`` in ascending order, placeholders
    inserted for those missing; each key with its stored state.

    One statement per chunk, the chunks in order: the rows are locked in key order whether
    they existed or not, so two members never wait for each other in a circle.
    """
    out: list[tuple[str, str]] = []
    for chunk in chunks(sorted(set(keys))):
        rows = connection.execute(
            text(
                "INSERT INTO entity_state (key, state) "
                "SELECT k, :p FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k "
                "ON CONFLICT (key) DO UPDATE SET state = entity_state.state "
                "RETURNING key, state"
            ),
            {"keys": list(chunk), "p": _PLACEHOLDER},
        )
        out.extend((row.key, row.state) for row in rows)
    return out


def load_states(connection: Connection, keys: Sequence[str]) -> dict[str, State]:
    states: dict[str, State] = {}
    for chunk in chunks(keys):
        query = select(entity_state.c.key, entity_state.c.state).where(
            entity_state.c.key.in_(chunk), entity_state.c.state != _PLACEHOLDER
        )
        for row in connection.execute(query):
            states[row.key] = orjson.loads(row.state)
    return states


def write_delta(connection: Connection, delta: BatchDelta, builder: BatchBuilder) -> None:
    """Write everything a batch changed. Rows are sorted so concurrent writers don't deadlock."""
    zero = dict.fromkeys(COUNTER_KEYS, 0)
    minute_rows = []
    for (minute, scope), values in delta.minute_counters.items():
        if any(values.values()):
            minute_rows.append(
                {
                    "bucket": minute,
                    "hour": builder.at_minute(minute).hour,
                    **scope_dict(scope),
                    **zero,
                    **values,
                }
            )
    hour_rows = _hour_rows(minute_rows)
    upsert(connection, kpi_minute, minute_rows, add=True)
    upsert(connection, kpi_hour, hour_rows, add=True)

    day_rows = []
    for (day, scope), values in delta.day_counters.items():
        if any(values.values()):
            day_rows.append(
                {
                    "day": day,
                    "week": _week(builder, day),
                    "month": day.replace(day=1),
                    **scope_dict(scope),
                    **zero,
                    **values,
                }
            )
    upsert(connection, kpi_day, day_rows, add=True)

    upsert(
        connection,
        disposition_minute,
        [
            {
                "bucket": minute,
                "hour": builder.at_minute(minute).hour,
                **scope_dict(scope),
                "disposition": code,
                "calls": calls,
            }
            for (minute, scope, code), calls in delta.minute_dispositions.items()
            if calls
        ],
        add=True,
    )
    upsert(
        connection,
        disposition_day,
        [
            {
                "day": day,
                "week": _week(builder, day),
                "month": day.replace(day=1),
                **scope_dict(scope),
                "disposition": code,
                "calls": calls,
            }
            for (day, scope, code), calls in delta.day_dispositions.items()
            if calls
        ],
        add=True,
    )
    _write_states(connection, delta.states)
    _write_roster(connection, delta.roster)
    if delta.agent_states:
        stmt = insert_for(connection, agent_state_change).on_conflict_do_nothing()
        connection.execute(stmt, sorted(delta.agent_states.values(), key=lambda r: r["event_id"]))
    _write_funnel(connection, delta)
    if delta.new_sales:
        counted_at = datetime.now(UTC)
        rows = [{**row, "counted_at": counted_at} for _, row in sorted(delta.new_sales.items())]
        connection.execute(insert_for(connection, sale_feed).on_conflict_do_nothing(), rows)
    # Last: the leads' locks are held until the commit.
    if delta.lead_facts and connection.dialect.name == "postgresql":
        leads = {
            v.lead_id for r in delta.lead_facts for v in (r.value, r.previous) if v is not None
        }
        _lock_rows(connection, (f"{_LEAD_KEY_PREFIX}{lead}" for lead in leads))
    write_lead_facts(connection, delta.lead_facts, builder)


def _hour_rows(minute_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The minute rows' counters summed per local hour and scope, for ``kpi_hour``."""
    hours: dict[tuple[Any, ...], dict[str, Any]] = {}
    for minute in minute_rows:
        key = (minute["hour"], minute["agent_id"], minute["team_id"], minute["campaign_id"])
        row = hours.get(key)
        if row is None:
            hours[key] = {k: v for k, v in minute.items() if k != "bucket"}
        else:
            for counter in COUNTER_KEYS:
                row[counter] += minute[counter]
    return [row for row in hours.values() if any(row[k] for k in COUNTER_KEYS)]


def _week(builder: BatchBuilder, day: date) -> date:
    return week_start(day, builder.week_start)


def _write_states(connection: Connection, states: dict[str, State]) -> None:
    if not states:
        return
    rows = [{"key": k, "state": orjson.dumps(v).decode()} for k, v in states.items()]
    upsert(connection, entity_state, rows, add=False)


def _write_roster(connection: Connection, roster: dict[str, tuple[str, str, str]]) -> None:
    if not roster:
        return
    rows = [
        {
            "agent_id": agent,
            "team_id": team,
            "occurred_at": parse_utc_text(ts),
            "event_id": event_id,
        }
        for agent, (ts, event_id, team) in sorted(roster.items())
    ]
    stmt = insert_for(connection, agent_team)
    newer = tuple_(stmt.excluded.occurred_at, stmt.excluded.event_id) > tuple_(
        agent_team.c.occurred_at, agent_team.c.event_id
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["agent_id"],
        set_={
            "team_id": stmt.excluded.team_id,
            "occurred_at": stmt.excluded.occurred_at,
            "event_id": stmt.excluded.event_id,
        },
        where=newer,
    )
    connection.execute(stmt, rows)


def _write_funnel(connection: Connection, delta: BatchDelta) -> None:
    """Stage changes once per event; a lead's stage only from a newer (occurred_at, event_id)."""
    if not delta.stage_changes:
        return
    changes = sorted(delta.stage_changes.values(), key=lambda r: r["event_id"])
    leads = sorted(delta.latest_stages(), key=lambda r: r["lead_id"])
    if connection.dialect.name == "postgresql":
        columns = [c for c in changes[0] if c != "lead_id"]
        copy_insert(connection, stage_change, changes, "DO NOTHING")
        copy_insert(
            connection,
            lead_stage,
            leads,
            "DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
            + " WHERE (EXCLUDED.occurred_at, EXCLUDED.event_id)"
            " > (lead_stage.occurred_at, lead_stage.event_id)",
        )
        return
    connection.execute(insert_for(connection, stage_change).on_conflict_do_nothing(), changes)
    upsert = insert_for(connection, lead_stage)
    newer = tuple_(upsert.excluded.occurred_at, upsert.excluded.event_id) > tuple_(
        lead_stage.c.occurred_at, lead_stage.c.event_id
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=["lead_id"],
        set_={c: upsert.excluded[c] for c in leads[0] if c != "lead_id"},
        where=newer,
    )
    connection.execute(upsert, leads)
