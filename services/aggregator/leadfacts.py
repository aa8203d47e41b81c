"""Writing a batch's lead facts, and the lead counts (``lead_count_day``, ``lead_count_hour``)
they change: the marks and hour counts of the newest facts worked out in ``leadcounts.py``,
those of any other change recomputed from the facts before and after the batch."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, bindparam, delete, func, select, tuple_

from services.aggregator.batch import BatchBuilder, LeadFactRow
from services.aggregator.facts import LeadFact, Scope, parse_utc_text, scope_dict
from services.aggregator.leadcounts import CountKey, HourKey, MarkChanges, grouped
from services.aggregator.upserts import chunks, upsert
from shared.leadcounts import (
    FACT_COLUMNS,
    HOUR_KEY_COLUMNS,
    KEY_COLUMNS,
    LEAD_FACTS,
    MARK_COLUMNS,
    contributions,
    day_window,
    hour_contributions,
)
from shared.models import lead_count_day, lead_count_hour, lead_fact
from shared.timeutil import as_utc, week_start


def write_lead_facts(
    connection: Connection, rows: list[LeadFactRow], builder: BatchBuilder
) -> None:
    """Lead facts, and the daily and hourly lead counts they change (see ``leadcounts.py``).

    The caller holds the locks of the rows' leads until the commit."""
    if not rows:
        return
    appended: list[tuple[str, str, date, datetime, Scope]] = []
    recompute: set[str] = set()
    days: set[date] = set()
    for row in rows:
        if row.fact not in LEAD_FACTS:
            continue  # a fact no lead count reads
        new = _placed(row.value, builder)
        old = _placed(row.previous, builder)
        if new == old:
            continue  # same lead, scope and hour: no count moves
        if old is None and new is not None:
            appended.append((new[0], row.fact, new[1], new[2], new[3]))
            continue
        for placed in (new, old):
            if placed is not None:
                recompute.add(placed[0])
                days.add(placed[1])
    by_pair = grouped(item for item in appended if item[0] not in recompute)
    newest = _newest_days(connection, by_pair, builder.week_start)
    changes = MarkChanges(builder.week_start)
    for (lead, fact), added in by_pair.items():
        known = newest.get((lead, fact), {})
        if known and min(hour for _, hour, _ in added) < max(h for _, h in known.values()):
            recompute.add(lead)  # not in the lead's newest hour or later: recomputed below
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
        # An hour's count depends on that hour's facts alone.
        hours_scope = (scope[0], min(days), max(days) + timedelta(days=1))
        hours_before = _hour_counts(connection, *hours_scope)
    _apply_lead_facts(connection, rows, builder)
    if recompute:
        changes.merge(before, _lead_counts(connection, *scope))
        changes.merge_hours(hours_before, _hour_counts(connection, *hours_scope))
    upsert(
        connection,
        lead_count_day,
        [
            dict(zip(KEY_COLUMNS, key, strict=True)) | dict(zip(MARK_COLUMNS, values, strict=True))
            for key, values in changes.changed().items()
        ],
        add=True,
    )
    upsert(
        connection,
        lead_count_hour,
        [
            dict(zip(HOUR_KEY_COLUMNS, key, strict=True))
            | dict(zip(LEAD_FACTS, counts, strict=True))
            for key, counts in changes.changed_hours().items()
        ],
        add=True,
    )


def _placed(
    value: LeadFact | None, builder: BatchBuilder
) -> tuple[str, date, datetime, Scope] | None:
    if value is None:
        return None
    cal = builder.calendar(value.ts)
    return value.lead_id, cal.day, cal.hour, value.scope


def _newest_days(
    connection: Connection,
    pairs: dict[tuple[str, str], list[tuple[date, datetime, Scope]]],
    first_weekday: int,
) -> dict[tuple[str, str], dict[Scope, tuple[date, datetime]]]:
    """Per lead and fact, the newest day and hour with a stored fact in each scope, from the
    start of the earliest week or month the added facts fall in."""
    if not pairs:
        return {}
    first = min(
        min(week_start(day, first_weekday), day.replace(day=1))
        for added in pairs.values()
        for day, _, _ in added
    )
    leads = sorted({lead for lead, _ in pairs})
    facts = sorted({fact for _, fact in pairs})
    c = lead_fact.c
    out: dict[tuple[str, str], dict[Scope, tuple[date, datetime]]] = defaultdict(dict)
    for chunk in chunks(leads):
        query = (
            select(
                c.lead_id,
                c.fact,
                c.agent_id,
                c.team_id,
                c.campaign_id,
                func.max(c.day),
                func.max(c.hour),
            )
            .where(c.lead_id.in_(chunk), c.fact.in_(facts), c.day >= first)
            .group_by(c.lead_id, c.fact, c.agent_id, c.team_id, c.campaign_id)
        )
        for lead, fact, agent, team, campaign, day, hour in connection.execute(query):
            out[(lead, fact)][(agent, team, campaign)] = (day, as_utc(hour))
    return out


def _facts_of_leads(*columns: str) -> Any:
    """``columns`` of the facts of some leads (``leads``) on some days (``[first, end)``)."""
    c = lead_fact.c
    return (
        select(*(c[name] for name in columns))
        .where(
            c.lead_id.in_(bindparam("leads", expanding=True)),
            c.day >= bindparam("first"),
            c.day < bindparam("end"),
        )
        .cte("source")
    )


@lru_cache(maxsize=1)
def _contributions_of_leads() -> Any:
    """``contributions`` of the facts of some leads on some days (built once, reused)."""
    return contributions(_facts_of_leads(*FACT_COLUMNS))


def _lead_counts(
    connection: Connection, leads: list[str], first: date, end: date
) -> dict[CountKey, tuple[int, ...]]:
    """``lead_count_day`` as computed from the facts of ``leads`` on the days ``[first, end)``."""
    return cast(
        dict[CountKey, tuple[int, ...]],
        _summed(connection, _contributions_of_leads(), len(KEY_COLUMNS), leads, first, end),
    )


@lru_cache(maxsize=1)
def _hour_contributions_of_leads() -> Any:
    """``hour_contributions`` of the facts of some leads on some days (built once, reused)."""
    return hour_contributions(
        _facts_of_leads("lead_id", "fact", "hour", "agent_id", "team_id", "campaign_id")
    )


def _hour_counts(
    connection: Connection, leads: list[str], first: date, end: date
) -> dict[HourKey, tuple[int, ...]]:
    """``lead_count_hour`` as computed from the facts of ``leads`` on the days ``[first, end)``."""
    counts = _summed(
        connection, _hour_contributions_of_leads(), len(HOUR_KEY_COLUMNS), leads, first, end
    )
    # SQLite hands the hour back without its offset.
    return {(k[0], as_utc(k[1]), k[2], k[3], k[4]): v for k, v in counts.items()}


def _summed(
    connection: Connection,
    statement: Any,
    width: int,
    leads: list[str],
    first: date,
    end: date,
) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """The rows of ``statement`` over ``leads`` a chunk at a time, keyed by their first
    ``width`` columns, the counters of equal keys added up."""
    out: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for chunk in chunks(leads):
        params = {"leads": list(chunk), "first": first, "end": end}
        for row in connection.execute(statement, params):
            key = tuple(row[:width])
            counts = tuple(int(v) for v in row[width:])
            known = out.get(key)
            out[key] = (
                counts
                if known is None
                else tuple(a + b for a, b in zip(known, counts, strict=True))
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
