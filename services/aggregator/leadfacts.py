"""Writing a batch's lead facts and the lead counts they change: ``lead_count_day`` (the
marks of the newest facts worked out in ``leadcounts.py``, those of any other change
recomputed from the facts before and after the batch), ``lead_count_hour`` (from the
facts stored in the hours the batch touches) and ``lead_last_minute`` / ``lead_last_hour``
(from the leads' latest facts before and after the batch)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, bindparam, delete, func, select, tuple_

from services.aggregator.batch import BatchBuilder, LeadFactRow
from services.aggregator.facts import LeadFact, Scope, parse_utc_text, scope_dict, utc_text
from services.aggregator.leadcounts import (
    CountKey,
    HourKey,
    HourPlace,
    Latest,
    MarkChanges,
    grouped,
    hour_changes,
    last_changes,
)
from services.aggregator.upserts import chunks, upsert, upsert_values
from shared.leadcounts import (
    FACT_COLUMNS,
    HOUR_KEY_COLUMNS,
    KEY_COLUMNS,
    LAST_HORIZON,
    LAST_HOUR_KEY_COLUMNS,
    LAST_MINUTE_KEY_COLUMNS,
    LEAD_FACTS,
    MARK_COLUMNS,
    contributions,
    day_window,
)
from shared.models import (
    lead_count_day,
    lead_count_hour,
    lead_fact,
    lead_last_hour,
    lead_last_minute,
)
from shared.timeutil import as_utc, week_start


def write_lead_facts(
    connection: Connection, rows: list[LeadFactRow], builder: BatchBuilder
) -> None:
    """Lead facts, and the daily and hourly lead counts they change (see ``leadcounts.py``).

    The caller holds the locks of the rows' leads until the commit."""
    if not rows:
        return
    hours = _hour_changes(connection, rows, builder)
    appended: list[tuple[str, str, date, Scope]] = []
    recompute: set[str] = set()
    days: set[date] = set()
    for row in rows:
        if row.fact not in LEAD_FACTS:
            continue  # a fact no lead count reads
        new = _placed(row.value, builder)
        old = _placed(row.previous, builder)
        if new == old:
            continue  # same lead, scope and day: no mark moves
        if old is None and new is not None:
            appended.append((new[0], row.fact, new[1], new[2]))
            continue
        for placed in (new, old):
            if placed is not None:
                recompute.add(placed[0])
                days.add(placed[1])
    by_pair = grouped(item for item in appended if item[0] not in recompute)
    horizon = datetime.now(UTC) - LAST_HORIZON
    recent = _recent_pairs(rows, utc_text(horizon))
    newest, latest = _newest(connection, by_pair, recent, builder, horizon)
    changes = MarkChanges(builder.week_start)
    for (lead, fact), added in by_pair.items():
        known = newest.get((lead, fact), {})
        if known and min(day for day, _ in added) < max(known.values()):
            recompute.add(lead)  # not the lead's newest: recomputed below
    for (lead, fact), added in by_pair.items():
        if lead not in recompute:
            changes.append(fact, newest.get((lead, fact), {}), added)
    if recompute:
        days.update(item[2] for item in appended if item[0] in recompute)
        # Windows only move forward with the day: the first and last day bound them all.
        first = day_window(min(days), builder.week_start)[0]
        end = day_window(max(days), builder.week_start)[1]
        scope = (sorted(recompute), first, end)
        before = _lead_counts(connection, *scope)
    _apply_lead_facts(connection, rows, builder)
    if recompute:
        changes.merge(before, _lead_counts(connection, *scope))
    minutes, last_hours = last_changes(
        latest, _latest_after(connection, latest, rows, builder, horizon), horizon, _placer(builder)
    )
    counted = (
        (lead_count_day, KEY_COLUMNS + MARK_COLUMNS, changes.changed()),
        (lead_count_hour, HOUR_KEY_COLUMNS + LEAD_FACTS, hours),
        (lead_last_minute, LAST_MINUTE_KEY_COLUMNS + LEAD_FACTS, minutes),
        (lead_last_hour, LAST_HOUR_KEY_COLUMNS + LEAD_FACTS, last_hours),
    )
    for table, columns, changed in counted:
        values = [(*key, *counts) for key, counts in changed.items()]
        upsert_values(connection, table, columns, values, add=True)


def _recent_pairs(rows: list[LeadFactRow], horizon: str) -> set[tuple[str, str]]:
    """The (lead, fact) pairs of the rows with a fact at ``horizon`` (UTC text) or later,
    before or after: those whose latest fact the batch may move where it is kept."""
    return {
        (value.lead_id, row.fact)
        for row in rows
        if row.fact in LEAD_FACTS
        for value in (row.value, row.previous)
        if value is not None and value.ts >= horizon
    }


def _newest(
    connection: Connection,
    pairs: dict[tuple[str, str], list[tuple[date, Scope]]],
    recent: set[tuple[str, str]],
    builder: BatchBuilder,
    horizon: datetime,
) -> tuple[dict[tuple[str, str], dict[Scope, date]], Latest]:
    """Per lead and fact, the newest day with a stored fact in each scope, from the start of
    the earliest week or month the facts of ``pairs`` fall in; and for ``recent``, the
    moment of its latest stored fact in each scope, among those at ``horizon`` or later.

    One read of the leads' facts for both. A day before that week or month changes no mark
    (it is in neither), so reading from the horizon's day where that is earlier is safe."""
    if not pairs and not recent:
        return {}, {}
    first = builder.calendar(utc_text(horizon)).day if recent else date.max
    for added in pairs.values():
        for day, _ in added:
            first = min(first, week_start(day, builder.week_start), day.replace(day=1))
    leads = sorted({lead for lead, _ in pairs} | {lead for lead, _ in recent})
    facts = sorted({fact for _, fact in pairs} | {fact for _, fact in recent})
    c = lead_fact.c
    newest: dict[tuple[str, str], dict[Scope, date]] = defaultdict(dict)
    latest: Latest = {pair: {} for pair in recent}
    for chunk in chunks(leads):
        query = (
            select(
                c.lead_id,
                c.fact,
                c.agent_id,
                c.team_id,
                c.campaign_id,
                func.max(c.day),
                func.max(c.occurred_at),
            )
            .where(c.lead_id.in_(chunk), c.fact.in_(facts), c.day >= first)
            .group_by(c.lead_id, c.fact, c.agent_id, c.team_id, c.campaign_id)
        )
        for lead, fact, agent, team, campaign, day, moment in connection.execute(query):
            scope = (agent, team, campaign)
            newest[(lead, fact)][scope] = day
            moments = latest.get((lead, fact))
            if moments is not None and (moment := as_utc(moment)) >= horizon:
                moments[scope] = moment
    return newest, latest


def _latest_after(
    connection: Connection,
    before: Latest,
    rows: list[LeadFactRow],
    builder: BatchBuilder,
    horizon: datetime,
) -> Latest:
    """``before`` (see :func:`_newest`) as the batch leaves it: a fact added moves its
    lead's latest fact in its scope if it is later; where a fact went or moved, its lead's
    latest facts are read again."""
    after = {pair: dict(moments) for pair, moments in before.items()}
    moved = {
        (row.previous.lead_id, row.fact)
        for row in rows
        if row.previous is not None and row.value != row.previous
    }
    for row in rows:
        value = row.value
        if value is None or (value.lead_id, row.fact) not in after:
            continue
        moment = parse_utc_text(value.ts)
        moments = after[(value.lead_id, row.fact)]
        if moment >= horizon and moment > moments.get(value.scope, horizon - LAST_HORIZON):
            moments[value.scope] = moment
    again = {pair for pair in moved if pair in after}
    if again:
        after.update(_newest(connection, {}, again, builder, horizon)[1])
    return after


def _placer(builder: BatchBuilder) -> Any:
    """A moment's minute and local hour, as the batch's calendar places it."""

    def place(moment: datetime) -> tuple[datetime, datetime]:
        cal = builder.calendar(utc_text(moment))
        return cal.minute, cal.hour

    return place


def _hour_changes(
    connection: Connection, rows: list[LeadFactRow], builder: BatchBuilder
) -> dict[HourKey, list[int]]:
    """The ``lead_count_hour`` changes of the rows, from the facts stored in their hours."""
    moves: list[tuple[HourPlace, int]] = []
    days: set[date] = set()
    hours: set[datetime] = set()
    for row in rows:
        if row.fact not in LEAD_FACTS:
            continue
        places = []
        for value, step in ((row.previous, -1), (row.value, 1)):
            if value is not None:
                cal = builder.calendar(value.ts)
                places.append(((value.lead_id, row.fact, cal.hour, value.scope), step))
                days.add(cal.day)
                hours.add(cal.hour)
        if len(places) == 2 and places[0][0] == places[1][0]:
            continue  # the same lead, hour and scope: nothing moves
        moves += places
    if not moves:
        return {}
    touched = {place[:3] for place, _ in moves}
    c = lead_fact.c
    stored: dict[HourPlace, int] = {}
    for chunk in chunks(sorted({lead for lead, _, _ in touched})):
        query = (
            select(c.lead_id, c.fact, c.hour, c.agent_id, c.team_id, c.campaign_id, func.count())
            .where(
                c.lead_id.in_(chunk),
                c.fact.in_(sorted({fact for _, fact, _ in touched})),
                # The day for the index on (lead_id, fact, day); only the hours are needed.
                c.day.in_(sorted(days)),
                c.hour.in_(sorted(hours)),
            )
            .group_by(c.lead_id, c.fact, c.hour, c.agent_id, c.team_id, c.campaign_id)
        )
        for lead, fact, hour, agent, team, campaign, n in connection.execute(query):
            # as_utc: SQLite hands the hour back without its offset
            stored[(lead, fact, as_utc(hour), (agent, team, campaign))] = n
    return hour_changes(stored, moves)


def _placed(value: LeadFact | None, builder: BatchBuilder) -> tuple[str, date, Scope] | None:
    if value is None:
        return None
    return value.lead_id, builder.calendar(value.ts).day, value.scope


@lru_cache(maxsize=1)
def _contributions_of_leads() -> Any:
    """``contributions`` of the facts of some leads on some days (built once, reused)."""
    c = lead_fact.c
    source = (
        select(*(c[name] for name in FACT_COLUMNS))
        .where(
            c.lead_id.in_(bindparam("leads", expanding=True)),
            c.day >= bindparam("first"),
            c.day < bindparam("end"),
        )
        .cte("source")
    )
    return contributions(source)


def _lead_counts(
    connection: Connection, leads: list[str], first: date, end: date
) -> dict[CountKey, tuple[int, ...]]:
    """``lead_count_day`` as computed from the facts of ``leads`` on the days ``[first, end)``."""
    out: dict[CountKey, tuple[int, ...]] = {}
    for chunk in chunks(leads):
        params = {"leads": list(chunk), "first": first, "end": end}
        for row in connection.execute(_contributions_of_leads(), params):
            key = cast(CountKey, tuple(row[: len(KEY_COLUMNS)]))
            marks = tuple(int(v) for v in row[len(KEY_COLUMNS) :])
            known = out.get(key)
            out[key] = (
                marks if known is None else tuple(a + b for a, b in zip(known, marks, strict=True))
            )
    return out


def _apply_lead_facts(
    connection: Connection, rows: list[LeadFactRow], builder: BatchBuilder
) -> None:
    gone = [(r.source, r.fact) for r in rows if r.value is None]
    for chunk in chunks(sorted(gone)):
        connection.execute(
            delete(lead_fact).where(tuple_(lead_fact.c.source, lead_fact.c.fact).in_(chunk))
        )
    present = []
    for row in rows:
        if row.value is None:
            continue
        ts = parse_utc_text(row.value.ts)
        cal = builder.calendar(row.value.ts)
        present.append(
            {
                "source": row.source,
                "fact": row.fact,
                "lead_id": row.value.lead_id,
                "occurred_at": ts,
                "bucket": cal.minute,
                "hour": cal.hour,
                "day": cal.day,
                "week": cal.week,
                "month": cal.month,
                **scope_dict(row.value.scope),
                "flag": row.value.flag,
            }
        )
    upsert(connection, lead_fact, present, add=False)
