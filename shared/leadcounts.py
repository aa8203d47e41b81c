"""Distinct leads made additive over days.

A lead counts once in a period however often it was dialed, so distinct counts cannot be
added up day by day. Each lead fact is marked instead where it opens or closes a calendar
period for its lead, fact and scope: the first fact of its local day, the first and the
last of its week, the first and the last of its month. For a range of whole local days:

- one day: the leads are the firsts of that day;
- from the start of a week (month) up to a day inside it: the firsts of that week (month);
- from a day inside a week (month) up to its end: the lasts of that week (month).

Every lead seen in such a range has exactly one marked fact in it, so its distinct count is
a sum. ``lead_count_day`` keeps those sums per local day for every scope kind (each subset
of agent, team and campaign: a lead dialed by two agents of a team counts once for the
team). The aggregator keeps it in step with ``lead_fact`` in each batch's transaction.

An hour needs no mark: ``lead_count_hour`` keeps, per scope kind and local hour, how many
leads have a fact in it, so buckets of whole hours (today by hour) are read as they are
stored.

A recent range that runs up to now (the rolling windows: the last 24 hours, the last hour)
has its own sum. A lead has a fact in ``[start, end)`` exactly when its latest fact is in
it, provided it has none at ``end`` or later. ``lead_last_minute`` and ``lead_last_hour``
keep, per scope kind and minute (local hour), how many leads have their latest fact there;
a lead's latest fact moves as its calls come in, one step back and one forward. They cover
the last :data:`LAST_HORIZON` only: a change at an older time is not written, and reads
start no earlier than :data:`LAST_READ_SPAN` ago. Any other range is counted from
``lead_fact`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    String,
    case,
    func,
    literal_column,
    select,
    union_all,
)

from shared.kpis import LEAD_COUNTS
from shared.timeutil import add_months, week_start

LEAD_FACTS: tuple[str, ...] = tuple(dict.fromkeys(c.fact for c in LEAD_COUNTS))
MARKS: tuple[str, ...] = ("day", "week_first", "week_last", "month_first", "month_last")
DIMENSIONS: tuple[str, ...] = ("agent", "team", "campaign")
KINDS: tuple[int, ...] = tuple(range(1 << len(DIMENSIONS)))
_PLACE = ("day", "week", "month", "agent_id", "team_id", "campaign_id")
# The columns of lead_fact the marks depend on, and the key of a lead_count_day row.
FACT_COLUMNS: tuple[str, ...] = ("lead_id", "fact", *_PLACE)
KEY_COLUMNS: tuple[str, ...] = ("kind", *_PLACE)
# The key of a lead_count_hour row; its counters are named as the facts are.
HOUR_KEY_COLUMNS: tuple[str, ...] = ("kind", "hour", "agent_id", "team_id", "campaign_id")
# The keys of lead_last_minute and lead_last_hour rows; their counters are named as the facts.
LAST_MINUTE_KEY_COLUMNS: tuple[str, ...] = ("kind", "bucket", "agent_id", "team_id", "campaign_id")
LAST_HOUR_KEY_COLUMNS = HOUR_KEY_COLUMNS
# How far back the latest-fact sums are kept, and how far back a read may start: the margin
# between them covers clocks of the aggregator and the API that differ by up to an hour.
LAST_HORIZON = timedelta(hours=26)
LAST_READ_SPAN = timedelta(hours=25)


def mark_column(fact: str, mark: str) -> str:
    return f"{fact}_{mark}"


MARK_COLUMNS: tuple[str, ...] = tuple(mark_column(f, m) for f in LEAD_FACTS for m in MARKS)


def kind_of(dimensions: Iterable[str]) -> int:
    """The scope kind of a set of dimensions: a bit per agent, team, campaign."""
    kind = 0
    for name in dimensions:
        kind |= 1 << DIMENSIONS.index(name)
    return kind


def dimensions_of(kind: int) -> tuple[str, ...]:
    return tuple(d for i, d in enumerate(DIMENSIONS) if kind & (1 << i))


def contributions(source: FromClause) -> Select[Any]:
    """Per kind, scope and day, how many lead facts of ``source`` carry each mark.

    ``source`` has the columns of ``lead_fact`` (other facts than the counted ones are left
    out). Marks depend only on the days on which a lead has a fact in a scope, so the result
    for a set of leads is the sum over its leads.
    """
    c = source.c
    members = []
    for kind in KINDS:
        dims = dimensions_of(kind)
        scope = [c[f"{d}_id"] for d in dims]
        # One row per lead, fact, scope and day: each is its day's first.
        days = (
            select(c.lead_id, c.fact, *scope, c.day, c.week, c.month)
            .where(c.fact.in_(LEAD_FACTS))
            .distinct()
            .subquery(f"days_{kind}")
        )
        d = days.c
        window = {
            "partition_by": [d.lead_id, d.fact, *(d[f"{name}_id"] for name in dims)],
            "order_by": [d.day],
        }

        def opens(column: ColumnElement[Any], window: dict[str, Any] = window) -> Any:
            return case((func.lag(column).over(**window).is_distinct_from(column), 1), else_=0)

        def closes(column: ColumnElement[Any], window: dict[str, Any] = window) -> Any:
            return case((func.lead(column).over(**window).is_distinct_from(column), 1), else_=0)

        members.append(
            select(
                literal_column(str(kind)).label("kind"),
                d.day,
                d.week,
                d.month,
                *_scope_of(d, kind),
                d.fact,
                literal_column("1").label("mark_day"),
                opens(d.week).label("mark_week_first"),
                closes(d.week).label("mark_week_last"),
                opens(d.month).label("mark_month_first"),
                closes(d.month).label("mark_month_last"),
            )
        )
    marked = union_all(*members).subquery("marked")
    m = marked.c
    per_fact = (
        select(
            *(m[k] for k in KEY_COLUMNS),
            m.fact,
            *(func.sum(m[f"mark_{mark}"]).label(f"n_{mark}") for mark in MARKS),
        )
        .group_by(*(m[k] for k in KEY_COLUMNS), m.fact)
        .subquery("per_fact")
    )
    f = per_fact.c
    sums = [
        func.sum(case((f.fact == fact, f[f"n_{mark}"]), else_=0)).label(mark_column(fact, mark))
        for fact in LEAD_FACTS
        for mark in MARKS
    ]
    grouped = [f[k] for k in KEY_COLUMNS]
    return select(*grouped, *sums).group_by(*grouped)


def hour_contributions(source: FromClause) -> Select[Any]:
    """Per kind, scope and local hour, how many leads of ``source`` have each fact in it.

    ``source`` has the columns of ``lead_fact`` with ``hour``; a lead counts once in each of
    its hours, so the result for a set of leads is the sum over its leads."""
    c = source.c
    members = [
        select(
            literal_column(str(kind)).label("kind"),
            c.hour,
            *_scope_of(c, kind),
            c.fact,
            c.lead_id,
        ).where(c.fact.in_(LEAD_FACTS))
        for kind in KINDS
    ]
    scoped = union_all(*members).subquery("scoped")
    s = scoped.c
    grouped = [s[k] for k in HOUR_KEY_COLUMNS]
    counts = [
        func.count(func.distinct(case((s.fact == fact, s.lead_id)))).label(fact)
        for fact in LEAD_FACTS
    ]
    return select(*grouped, *counts).group_by(*grouped)


def last_contributions(source: FromClause, horizon: datetime, bucket: str) -> Select[Any]:
    """Per kind, scope and ``bucket`` (``"bucket"``: the minute, ``"hour"``: the local hour),
    how many leads of ``source`` have their latest fact of each kind there, counting only
    latest facts at ``horizon`` or later.

    ``source`` has the columns of ``lead_fact``. A lead's latest fact at ``horizon`` or later
    is its latest among its facts at ``horizon`` or later, so only those are read."""
    c = source.c
    members: list[Select[Any]] = []
    for kind in KINDS:
        partition = [c.lead_id, c.fact, *(c[f"{name}_id"] for name in dimensions_of(kind))]
        place = func.rank().over(partition_by=partition, order_by=c.occurred_at.desc())
        members.append(
            select(
                literal_column(str(kind)).label("kind"),
                c[bucket].label(bucket),
                *_scope_of(c, kind),
                c.fact,
                place.label("place"),
                c.lead_id,
            ).where(c.fact.in_(LEAD_FACTS), c.occurred_at >= horizon)
        )
    ranked = union_all(*members).subquery("ranked")
    r = ranked.c
    grouped = [r.kind, r[bucket], r.agent_id, r.team_id, r.campaign_id]
    # Facts tied at a lead's latest moment share its minute: the lead counts once.
    counts = [
        func.count(func.distinct(case((r.fact == fact, r.lead_id)))).label(fact)
        for fact in LEAD_FACTS
    ]
    return select(*grouped, *counts).where(r.place == 1).group_by(*grouped)


def _scope_of(columns: Any, kind: int) -> list[Any]:
    """agent_id, team_id, campaign_id as a row of ``kind`` holds them: "" where it does not
    look."""
    dims = dimensions_of(kind)
    return [
        (columns[f"{name}_id"] if name in dims else literal_column("''", String)).label(
            f"{name}_id"
        )
        for name in DIMENSIONS
    ]


def day_window(day: date, first_weekday: int) -> tuple[date, date]:
    """Whole weeks around the month of ``day``: the facts that decide its marks."""
    month = day.replace(day=1)
    following = add_months(month, 1)
    return (
        week_start(month, first_weekday),
        week_start(following - timedelta(days=1), first_weekday) + timedelta(days=7),
    )


def range_mark(start: date, end: date, first_weekday: int) -> str | None:
    """The mark whose sum over the days ``[start, end)`` counts each lead once, if any."""
    if end - start == timedelta(days=1):
        return "day"
    week = week_start(start, first_weekday)
    if start == week and end <= week + timedelta(days=7):
        return "week_first"
    if end == week + timedelta(days=7):
        return "week_last"
    month = start.replace(day=1)
    if start == month and end <= add_months(month, 1):
        return "month_first"
    if end == add_months(month, 1):
        return "month_last"
    return None
