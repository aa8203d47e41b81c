"""Reads of the KPI tables: sums of counters, distinct leads, dispositions, time logged in.

Every function returns base values keyed by a :data:`RowKey`, the group values in the order
of ``group_by`` followed by the bucket (``None`` without granularity). Whole local days come
from the day rollup, whole local hours from the hour rollup (counters), the minutes at
either edge of a range from the minute table. An agent's
team is the team its events named, or else its current team from the roster.

A key limited to some teams reads only the records that themselves name one of them
(``Filters.key_teams``): never by way of the roster, which any posted event can change.
:func:`filter_conditions` is where that is applied, so every read built on it has it.

One module, over 500 lines: every read here shares :class:`Filters`, :class:`Query`, the
split of a range into whole days and edge minutes, and the one place a key's teams are
applied; split apart, each piece would import all of them back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, case, func, select

from services.api.metrics.periods import Granularity, TimeRange
from shared.kpis import LEAD_FACT_OF, from_stored
from shared.leadcounts import LAST_READ_SPAN, kind_of, mark_column, range_mark
from shared.models import (
    agent_state_change,
    agent_team,
    disposition_day,
    disposition_minute,
    kpi_day,
    kpi_hour,
    kpi_minute,
    lead_count_day,
    lead_count_hour,
    lead_fact,
    lead_last_hour,
    lead_last_minute,
)
from shared.timeutil import add_months, as_utc, floor_local_hour, local_midnight, week_start

Bucket = datetime | date | None
RowKey = tuple[Any, ...]
GROUP_COLUMN = {"agent": "agent_id", "team": "team_id", "campaign": "campaign_id"}
# The teams the reading key is limited to; ``None``: a key that reads every team.
KeyTeams = frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Filters:
    agent_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    campaign_ids: tuple[str, ...] = ()
    # No default: whoever builds a filter says whose read it is.
    key_teams: KeyTeams = field(kw_only=True)

    def by_dimension(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Each dimension with the values it is filtered to (empty: not filtered)."""
        return (
            ("agent", self.agent_ids),
            ("team", self.team_ids),
            ("campaign", self.campaign_ids),
        )

    def admits(self, scope: Sequence[str | None]) -> bool:
        """Whether ``scope`` (agent, team, campaign) passes every filter."""
        return all(
            not values or value in values
            for (_, values), value in zip(self.by_dimension(), scope, strict=True)
        )


@dataclass(frozen=True, slots=True)
class Query:
    """What one metrics read asks for."""

    group_by: tuple[str, ...]
    granularity: Granularity
    range: TimeRange
    filters: Filters
    zone: tzinfo
    first_weekday: int = 0
    # False when ``zone`` is not the deployment's: the stored local columns (hour, day,
    # week, month) and the day rollup do not apply, so buckets come from UTC minutes.
    native: bool = True


def scoped(table: Any, *, roster: bool = True) -> tuple[Any, dict[str, ColumnElement[Any]]]:
    """``table`` with the columns a read groups and filters by. Its team comes from the roster
    where the row names none; ``roster=False`` leaves the roster out (and the team with it),
    for reads that neither group nor filter by team."""
    if not roster:
        columns = {"agent": table.c.agent_id, "key_team": table.c.team_id}
        if "campaign_id" in table.c:
            columns["campaign"] = table.c.campaign_id
        return table, columns
    known = agent_team.alias("roster")
    team = case((table.c.team_id != "", table.c.team_id), else_=func.coalesce(known.c.team_id, ""))
    joined = table.outerjoin(known, known.c.agent_id == table.c.agent_id)
    # "key_team": the team the record itself named, what a team-limited key is judged by.
    columns = {"agent": table.c.agent_id, "team": team, "key_team": table.c.team_id}
    if "campaign_id" in table.c:
        columns["campaign"] = table.c.campaign_id
    return joined, columns


def filter_conditions(
    columns: dict[str, ColumnElement[Any]], filters: Filters
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, values in filters.by_dimension():
        if values:
            conditions.append(columns[name].in_(values))
    if filters.key_teams is not None:
        conditions.append(columns["key_team"].in_(sorted(filters.key_teams)))
    return conditions


def day_split(rng: TimeRange, zone: tzinfo) -> tuple[list[TimeRange], tuple[date, date] | None]:
    """The minute ranges at the edges of ``rng`` and the whole local days inside it."""
    start_day = rng.start.astimezone(zone).date()
    if local_midnight(start_day, zone) < rng.start:
        start_day += timedelta(days=1)
    end_day = rng.end.astimezone(zone).date()
    if start_day >= end_day:
        return [rng], None
    edges = [
        TimeRange(rng.start, local_midnight(start_day, zone)),
        TimeRange(local_midnight(end_day, zone), rng.end),
    ]
    return [e for e in edges if e.end > e.start], (start_day, end_day)


def hour_split(rng: TimeRange, zone: tzinfo) -> tuple[list[TimeRange], TimeRange | None]:
    """The minute ranges at the edges of ``rng`` and the whole local hours inside it."""
    first = floor_local_hour(rng.start, zone)
    if first < rng.start:
        first = floor_local_hour(rng.start + timedelta(hours=1), zone)
    last = floor_local_hour(rng.end, zone)
    if first >= last:
        return [rng], None
    edges = [TimeRange(rng.start, first), TimeRange(last, rng.end)]
    return [e for e in edges if e.end > e.start], TimeRange(first, last)


def _bucket_of_hour(hour: datetime, query: Query) -> Bucket:
    local = as_utc(hour).astimezone(query.zone).date()
    if query.granularity is Granularity.day:
        return local
    if query.granularity is Granularity.week:
        return week_start(local, query.first_weekday)
    return local.replace(day=1)


def _normalize_bucket(value: Any, query: Query, column: str) -> Bucket:
    if query.granularity is Granularity.none:
        return None
    if not query.native:
        return _bucket_for_time(as_utc(value), query)
    if column == "hour" and query.granularity not in (Granularity.hour, Granularity.minute):
        return _bucket_of_hour(value, query)
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str):  # SQLite may hand dates back as text
        return date.fromisoformat(value)
    return value  # type: ignore[no-any-return]


def _read(
    connection: Connection,
    table: Table,
    value_columns: Mapping[str, ColumnElement[Any]],
    query: Query,
    *,
    bucket_column: str | None,
    condition: ColumnElement[bool],
    extra_group: Sequence[str] = (),
) -> list[tuple[RowKey, dict[str, Any]]]:
    by_team = "team" in query.group_by or bool(query.filters.team_ids)
    joined, columns = scoped(table, roster=by_team)
    groups = [columns[g].label(g) for g in query.group_by]
    groups += [table.c[c].label(c) for c in extra_group]
    if bucket_column is not None:
        groups.append(table.c[bucket_column].label("bucket"))
    stmt = (
        select(*groups, *(v.label(k) for k, v in value_columns.items()))
        .select_from(joined)
        .where(condition, *filter_conditions(columns, query.filters))
    )
    if groups:
        stmt = stmt.group_by(*(g.element for g in groups))
    out = []
    for row in connection.execute(stmt).mappings():
        key_values = [row[g] or None for g in query.group_by]
        key_values += [row[c] for c in extra_group]
        bucket = (
            _normalize_bucket(row["bucket"], query, bucket_column)
            if bucket_column is not None
            else None
        )
        out.append(((*key_values, bucket), {k: row[k] for k in value_columns}))
    return out


def _sources(
    query: Query, minute_table: Table, day_table: Table, hour_table: Table | None = None
) -> list[tuple[Table, str | None, ColumnElement[bool]]]:
    """(table, bucket column, condition) pieces that cover the range: whole local days from
    ``day_table``, whole local hours from ``hour_table`` if there is one, minutes at the
    edges."""
    minute_bucket = {
        Granularity.none: None,
        Granularity.minute: "bucket",
        Granularity.hour: "hour",
    }.get(query.granularity, "hour")
    if not query.native:
        minute_bucket = None if query.granularity is Granularity.none else "bucket"
        edges, days = [query.range], None
    elif query.granularity in (Granularity.minute, Granularity.hour):
        edges, days = [query.range], None
    else:
        edges, days = day_split(query.range, query.zone)
    pieces: list[tuple[Table, str | None, ColumnElement[bool]]] = []
    if hour_table is not None and query.native and query.granularity is not Granularity.minute:
        hour_bucket = None if minute_bucket is None else "hour"
        minute_edges = []
        for edge in edges:
            outside, hours = hour_split(edge, query.zone)
            minute_edges += outside
            if hours is not None:
                condition = and_(hour_table.c.hour >= hours.start, hour_table.c.hour < hours.end)
                pieces.append((hour_table, hour_bucket, condition))
        edges = minute_edges
    pieces += [
        (
            minute_table,
            minute_bucket,
            and_(minute_table.c.bucket >= e.start, minute_table.c.bucket < e.end),
        )
        for e in edges
    ]
    if days is not None:
        day_bucket = None if query.granularity is Granularity.none else query.granularity.value
        pieces.append(
            (
                day_table,
                day_bucket,
                and_(day_table.c.day >= days[0], day_table.c.day < days[1]),
            )
        )
    return pieces


def counter_sums(
    connection: Connection, keys: Sequence[str], query: Query
) -> dict[RowKey, dict[str, Any]]:
    """Sums of the stored counters ``keys``, in their KPI units."""
    totals: dict[RowKey, dict[str, int]] = defaultdict(lambda: dict.fromkeys(keys, 0))
    if not keys:
        return {}
    for table, bucket_column, condition in _sources(query, kpi_minute, kpi_day, kpi_hour):
        values = {k: func.sum(table.c[k]) for k in keys}
        for key, row in _read(
            connection,
            table,
            values,
            query,
            bucket_column=bucket_column,
            condition=condition,
        ):
            target = totals[key]
            for k in keys:
                target[k] += int(row[k] or 0)
    return {
        key: {k: from_stored(k, v) for k, v in values.items()} for key, values in totals.items()
    }


def disposition_counts(connection: Connection, query: Query) -> dict[RowKey, dict[str, int]]:
    totals: dict[RowKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for table, bucket_column, condition in _sources(query, disposition_minute, disposition_day):
        for key, row in _read(
            connection,
            table,
            {"calls": func.sum(table.c.calls)},
            query,
            bucket_column=bucket_column,
            condition=condition,
            extra_group=("disposition",),
        ):
            *group, code, bucket = key
            if row["calls"]:
                totals[(*group, bucket)][code] += int(row["calls"])
    return {k: dict(sorted(v.items())) for k, v in totals.items()}


def lead_counts(
    connection: Connection, keys: Sequence[str], query: Query, *, sums: bool = True
) -> dict[RowKey, dict[str, int]]:
    """Distinct leads per lead-level KPI, exact for the range and scope.

    Summed from ``lead_count_day`` (whole days), ``lead_count_hour`` (hour buckets) or the
    latest-fact tables (a recent range up to now) where the range allows it, unless ``sums``
    is False; counted from the lead facts otherwise.
    """
    if not keys:
        return {}
    bucket_column = None if query.granularity is Granularity.none else query.granularity.value
    if bucket_column == "minute":
        bucket_column = "bucket"
    facts = {k: LEAD_FACT_OF[k] for k in keys}
    values = {
        k: func.count(func.distinct(case((lead_fact.c.fact == fact, lead_fact.c.lead_id))))
        for k, fact in facts.items()
    }
    condition = _facts_in(facts, query.range)
    if not query.native and bucket_column is not None:
        return _lead_counts_by_minute(connection, facts, query, condition)
    summed = None
    if sums and query.granularity is Granularity.hour:
        summed = _lead_counts_from_hours(connection, facts, query, values)
    elif sums:
        summed = _lead_counts_from_days(connection, facts, query)
        if summed is None:
            summed = _lead_counts_from_lasts(connection, facts, query)
    if summed is not None:
        return summed
    rows = _read(
        connection,
        lead_fact,
        values,
        query,
        bucket_column=bucket_column,
        condition=condition,
    )
    return {key: {k: int(v) for k, v in row.items()} for key, row in rows}


def _lead_counts_from_days(
    connection: Connection, facts: dict[str, str], query: Query
) -> dict[RowKey, dict[str, int]] | None:
    """Distinct leads as sums over ``lead_count_day``, when the query allows it.

    It does when every bucket is whole local days that one mark covers (see
    ``shared.leadcounts``), and the scope is a kind: the grouped dimensions plus those
    filtered to one value. ``None`` otherwise, and when facts without a team would need the
    roster to place them.
    """
    pieces = _lead_count_pieces(query)
    if pieces is None:
        return None
    table = lead_count_day
    first, end = pieces[0][1], pieces[-1][2]
    kind = _count_kind(connection, query, table, table.c.day >= first, table.c.day < end)
    if kind is None:
        return None
    bucket_column = None if query.granularity is Granularity.none else query.granularity.value
    out: dict[RowKey, dict[str, int]] = defaultdict(lambda: dict.fromkeys(facts, 0))
    for mark, start, stop in pieces:
        sums = {key: table.c[mark_column(fact, mark)] for key, fact in facts.items()}
        in_range = (table.c.day >= start, table.c.day < stop)
        _add_sums(connection, table, kind, sums, in_range, query, out, bucket_column)
    return _as_counted(out, query, bucket_column)


def _add_sums(
    connection: Connection,
    table: Table,
    kind: int,
    sums: Mapping[str, ColumnElement[Any]],
    conditions: Sequence[ColumnElement[bool]],
    query: Query,
    out: dict[RowKey, dict[str, int]],
    bucket_column: str | None = None,
) -> None:
    """Add to ``out``, per group (and bucket), the sums of the columns ``sums`` over the rows
    of a lead count table of scope ``kind`` that meet ``conditions`` and the filters."""
    columns = _count_columns(table)
    groups = [columns[g].label(g) for g in query.group_by]
    if bucket_column is not None:
        groups.append(table.c[bucket_column].label("bucket"))
    stmt = select(*groups, *(func.sum(c).label(key) for key, c in sums.items())).where(
        table.c.kind == kind, *conditions, *filter_conditions(columns, query.filters)
    )
    if groups:
        stmt = stmt.group_by(*(g.element for g in groups))
    for row in connection.execute(stmt).mappings():
        bucket = (
            _normalize_bucket(row["bucket"], query, bucket_column)
            if bucket_column is not None
            else None
        )
        counts = out[(*(row[g] or None for g in query.group_by), bucket)]
        for key in sums:
            counts[key] += int(row[key] or 0)


def _as_counted(
    out: dict[RowKey, dict[str, int]], query: Query, bucket_column: str | None
) -> dict[RowKey, dict[str, int]]:
    """Summed counts keyed as counting the facts keys them: one total over no groups, else
    a group (and bucket) where it has one of the facts asked about."""
    if not query.group_by and bucket_column is None:
        return {(None,): out[(None,)]}
    return {key: counts for key, counts in out.items() if any(counts.values())}


def _lead_counts_from_hours(
    connection: Connection,
    facts: dict[str, str],
    query: Query,
    values: Mapping[str, ColumnElement[Any]],
) -> dict[RowKey, dict[str, int]] | None:
    """Distinct leads per hour bucket: whole local hours summed from ``lead_count_hour``,
    the part-hours at either edge of the range counted from the facts.

    ``None`` when the scope is not a kind, as for :func:`_lead_counts_from_days`."""
    edges, hours = hour_split(query.range, query.zone)
    if hours is None:
        return None
    table = lead_count_hour
    in_range = (table.c.hour >= hours.start, table.c.hour < hours.end)
    kind = _count_kind(connection, query, table, *in_range)
    if kind is None:
        return None
    summed: dict[RowKey, dict[str, int]] = defaultdict(lambda: dict.fromkeys(facts, 0))
    sums = {key: table.c[fact] for key, fact in facts.items()}
    _add_sums(connection, table, kind, sums, in_range, query, summed, "hour")
    out = _as_counted(summed, query, "hour")
    for edge in edges:  # each within one hour bucket: its distinct leads are that bucket's
        for key, counted in _read(
            connection,
            lead_fact,
            values,
            query,
            bucket_column="hour",
            condition=_facts_in(facts, edge),
        ):
            out[key] = {k: int(v) for k, v in counted.items()}
    return out


def _lead_counts_from_lasts(
    connection: Connection, facts: dict[str, str], query: Query
) -> dict[RowKey, dict[str, int]] | None:
    """Distinct leads of a recent range that runs up to now (a rolling window), as the leads
    whose latest fact is in it: whole local hours summed from ``lead_last_hour``, the
    minutes at either edge from ``lead_last_minute`` (see ``shared.leadcounts``).

    ``None`` for buckets, for a range that is not whole minutes or starts more than
    ``LAST_READ_SPAN`` ago, when one of the facts lies at the range's end or later (its
    lead's latest fact would hide those in the range), and when the scope is not a kind, as
    for :func:`_lead_counts_from_days`."""
    rng = query.range
    if (
        not query.native
        or query.granularity is not Granularity.none
        or rng.start < datetime.now(UTC) - LAST_READ_SPAN
        or any(t.second or t.microsecond for t in (rng.start, rng.end))
    ):
        return None
    later = select(lead_fact.c.fact).where(
        lead_fact.c.fact.in_(sorted(set(facts.values()))), lead_fact.c.occurred_at >= rng.end
    )
    if connection.execute(later.limit(1)).first() is not None:
        return None
    edges, hours = hour_split(rng, query.zone)
    pieces = [
        (lead_last_minute, lead_last_minute.c.bucket >= e.start, lead_last_minute.c.bucket < e.end)
        for e in edges
    ]
    if hours is not None:
        table = lead_last_hour
        pieces.append((table, table.c.hour >= hours.start, table.c.hour < hours.end))
    kinds = {_count_kind(connection, query, table, *in_range) for table, *in_range in pieces}
    kind = kinds.pop() if len(kinds) == 1 else None
    if kind is None:
        return None
    out: dict[RowKey, dict[str, int]] = defaultdict(lambda: dict.fromkeys(facts, 0))
    for table, *in_range in pieces:
        sums = {key: table.c[fact] for key, fact in facts.items()}
        _add_sums(connection, table, kind, sums, in_range, query, out)
    return _as_counted(out, query, None)


def _facts_in(facts: dict[str, str], rng: TimeRange) -> ColumnElement[bool]:
    """The lead facts of the kinds ``facts`` names that occurred in ``rng``."""
    return and_(
        lead_fact.c.occurred_at >= rng.start,
        lead_fact.c.occurred_at < rng.end,
        lead_fact.c.fact.in_(sorted(set(facts.values()))),
    )


def _count_kind(
    connection: Connection, query: Query, table: Table, *in_range: ColumnElement[bool]
) -> int | None:
    """The scope kind whose rows of the lead count tables answer ``query``: the grouped
    dimensions plus those filtered to one value. ``None`` when filters name several values
    of a dimension not grouped by, and when facts without a team in the rows ``in_range``
    would need the roster to place them."""
    dims = set(query.group_by)
    key_teams = query.filters.key_teams
    for name, values in (*query.filters.by_dimension(), ("team", tuple(key_teams or ()))):
        if values and name not in dims:
            if len(values) > 1:
                return None
            dims.add(name)
    kind = kind_of(dims)
    if "team" in dims:
        teamless = select(table.c.kind).where(
            table.c.kind == kind, *in_range, table.c.team_id == ""
        )
        if connection.execute(teamless.limit(1)).first() is not None:
            return None
    return kind


def _count_columns(table: Table) -> dict[str, ColumnElement[Any]]:
    return {
        "agent": table.c.agent_id,
        "team": table.c.team_id,
        "campaign": table.c.campaign_id,
        "key_team": table.c.team_id,
    }


def _lead_count_pieces(query: Query) -> list[tuple[str, date, date]] | None:
    """The runs of whole local days a query's buckets cover, each with the mark that
    counts every lead once in each of its buckets; ``None`` when some bucket has none."""
    if not query.native or query.granularity in (Granularity.minute, Granularity.hour):
        return None
    edges, days = day_split(query.range, query.zone)
    if edges or days is None:
        return None
    start, end = days
    buckets = []
    cursor = start
    while cursor < end:
        if query.granularity is Granularity.week:
            following = week_start(cursor, query.first_weekday) + timedelta(days=7)
        elif query.granularity is Granularity.month:
            following = add_months(cursor.replace(day=1), 1)
        elif query.granularity is Granularity.day:
            following = cursor + timedelta(days=1)
        else:
            following = end
        buckets.append((cursor, min(following, end)))
        cursor = following
    pieces: list[tuple[str, date, date]] = []
    for bucket_start, bucket_end in buckets:
        mark = range_mark(bucket_start, bucket_end, query.first_weekday)
        if mark is None:
            return None
        if pieces and pieces[-1][0] == mark:
            pieces[-1] = (mark, pieces[-1][1], bucket_end)
        else:
            pieces.append((mark, bucket_start, bucket_end))
    return pieces


def _lead_counts_by_minute(
    connection: Connection,
    facts: dict[str, str],
    query: Query,
    condition: ColumnElement[bool],
) -> dict[RowKey, dict[str, int]]:
    # Buckets in a zone other than the stored one: distinct leads per minute cannot be
    # added up, so the leads themselves are gathered per bucket.
    rows = _read(
        connection,
        lead_fact,
        {},
        query,
        bucket_column="bucket",
        condition=condition,
        extra_group=("fact", "lead_id"),
    )
    leads: dict[RowKey, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for key, _ in rows:
        *group, fact, lead_id, bucket = key
        leads[(*group, bucket)][fact].add(lead_id)
    return {key: {k: len(sets[fact]) for k, fact in facts.items()} for key, sets in leads.items()}


def resolved_first_calls(connection: Connection, query: Query) -> dict[RowKey, int]:
    """Resolved inbound calls that were their lead's first inbound call in the range.

    A lead's first inbound call is its first of the whole floor, whoever took it: a call
    that resolved a lead another agent (or team, or campaign) had taken first does not
    count, whatever the scope asked for. So the counts of agents add up to their team's.
    """
    everyone = replace(
        query,
        group_by=("agent", "team", "campaign"),
        filters=Filters(key_teams=query.filters.key_teams),
    )
    rows = _read(
        connection,
        lead_fact,
        {},
        everyone,
        bucket_column=None,
        condition=and_(
            lead_fact.c.fact == "inbound",
            lead_fact.c.occurred_at >= query.range.start,
            lead_fact.c.occurred_at < query.range.end,
        ),
        extra_group=("lead_id", "occurred_at", "source", "flag"),
    )
    first: dict[str, tuple[Any, ...]] = {}
    for key, _ in rows:
        *scope, lead_id, occurred_at, source, flag, _bucket = key
        candidate = (as_utc(occurred_at), source, flag, tuple(scope))
        if lead_id not in first or candidate[:2] < first[lead_id][:2]:
            first[lead_id] = candidate
    position = {name: i for i, (name, _) in enumerate(query.filters.by_dimension())}
    out: dict[RowKey, int] = defaultdict(int)
    for occurred_at, _source, flag, scope in first.values():
        if flag and query.filters.admits(scope):
            group = tuple(scope[position[name]] for name in query.group_by)
            out[(*group, _bucket_for_time(occurred_at, query))] += 1
    return out


def _bucket_for_time(ts: datetime, query: Query) -> Bucket:
    g = query.granularity
    if g is Granularity.none:
        return None
    if g is Granularity.minute:
        return ts.replace(second=0, microsecond=0)
    local = ts.astimezone(query.zone)
    if g is Granularity.hour:
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return _bucket_of_hour(ts, query)


def logged_in_seconds(connection: Connection, query: Query, now: datetime) -> dict[RowKey, Any]:
    """Seconds each agent spent in any state but ``logged_out`` inside the range.

    A state lasts until the agent's next state; the latest one counts up to now. Time is
    split over buckets at the exact instants where they start.
    """
    if "campaign" in query.group_by:
        return {}
    table = agent_state_change
    joined, columns = scoped(table)
    end = min(query.range.end, now)
    before = (
        select(table.c.agent_id, func.max(table.c.occurred_at).label("last"))
        .where(table.c.occurred_at < query.range.start)
        .group_by(table.c.agent_id)
        .subquery()
    )
    # A state lasts until the agent's next one whichever team that names, so the team
    # filters (asked for, and the key's) are applied to the states below, not to the rows.
    key_teams, team_ids = query.filters.key_teams, query.filters.team_ids
    by_agent = replace(query.filters, team_ids=(), key_teams=None)
    stmt = (
        select(
            table.c.agent_id,
            columns["team"].label("team"),
            table.c.team_id.label("own_team"),
            table.c.state,
            table.c.occurred_at,
            table.c.event_id,
        )
        .select_from(joined.outerjoin(before, before.c.agent_id == table.c.agent_id))
        .where(
            table.c.occurred_at < end,
            (table.c.occurred_at >= query.range.start) | (table.c.occurred_at == before.c.last),
            *filter_conditions(columns, by_agent),
        )
        .order_by(table.c.agent_id, table.c.occurred_at, table.c.event_id)
    )
    per_agent: dict[str, list[Any]] = defaultdict(list)
    for row in connection.execute(stmt):
        per_agent[row.agent_id].append(row)
    out: dict[RowKey, Any] = defaultdict(lambda: 0)
    for agent_id, changes in per_agent.items():
        for index, change in enumerate(changes):
            if change.state == "logged_out":
                continue
            if key_teams is not None and change.own_team not in key_teams:
                continue
            if team_ids and change.team not in team_ids:
                continue
            start = max(as_utc(change.occurred_at), query.range.start)
            stop = as_utc(changes[index + 1].occurred_at) if index + 1 < len(changes) else end
            stop = min(stop, end)
            group = [{"agent": agent_id, "team": change.team or None}[g] for g in query.group_by]
            for bucket, seconds in _split_by_bucket(start, stop, query):
                out[(*group, bucket)] += seconds
    return out


def _split_by_bucket(start: datetime, stop: datetime, query: Query) -> list[tuple[Bucket, Any]]:
    if stop <= start:
        return []
    if query.granularity is Granularity.none:
        return [(None, _seconds(stop - start))]
    pieces = []
    cursor = start
    while cursor < stop:
        bucket = _bucket_for_time(cursor, query)
        following = _next_bucket_start(cursor, query)
        piece_end = min(following, stop)
        pieces.append((bucket, _seconds(piece_end - cursor)))
        cursor = piece_end
    return pieces


def _next_bucket_start(ts: datetime, query: Query) -> datetime:
    g = query.granularity
    if g is Granularity.minute:
        return ts.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if g is Granularity.hour:
        local = ts.astimezone(query.zone).replace(minute=0, second=0, microsecond=0)
        return (local.astimezone(UTC) + timedelta(hours=1)).astimezone(UTC)
    bucket = _bucket_for_time(ts, query)
    assert isinstance(bucket, date)
    if g is Granularity.day:
        following = bucket + timedelta(days=1)
    elif g is Granularity.week:
        following = bucket + timedelta(days=7)
    else:
        following = date(bucket.year + bucket.month // 12, bucket.month % 12 + 1, 1)
    return local_midnight(following, query.zone)


def _seconds(delta: timedelta) -> Decimal:
    micros = delta // timedelta(microseconds=1)
    return Decimal(micros) / 1_000_000


def agent_teams(connection: Connection, key_teams: KeyTeams) -> dict[str, str]:
    """Each agent's team as the reading key may know it.

    For a key that reads every team, the roster (the team the agent's latest event named).
    For a key limited to teams, only agents with records naming one of them, each with the
    latest of those teams its records named: the roster is not asked, as one posted event
    would move an agent, and its history, into another team's sight.
    """
    if key_teams is None:
        return {row.agent_id: row.team_id for row in connection.execute(select(agent_team))}
    teams = sorted(key_teams)
    latest: dict[str, tuple[date, str]] = {}
    day_rows = select(kpi_day.c.agent_id, kpi_day.c.team_id, func.max(kpi_day.c.day)).where(
        kpi_day.c.team_id.in_(teams)
    )
    state_rows = select(
        agent_state_change.c.agent_id,
        agent_state_change.c.team_id,
        func.max(agent_state_change.c.occurred_at),
    ).where(agent_state_change.c.team_id.in_(teams))
    for stmt in (day_rows, state_rows):
        rows = connection.execute(stmt.group_by(*stmt.selected_columns[:2]))
        for agent_id, team_id, last in rows:
            day = as_utc(last).date() if isinstance(last, datetime) else _as_date(last)
            if agent_id not in latest or (day, team_id) > latest[agent_id]:
                latest[agent_id] = (day, team_id)
    return {agent_id: team_id for agent_id, (_, team_id) in latest.items()}


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def group_count(connection: Connection, query: Query) -> int:
    """The most groups (agents, teams, campaigns, or their combinations) an answer to
    ``query`` can hold: the ids it is filtered to, else what the roster knows (agents and
    teams) or the campaigns of the days the range touches. Cheap: the roster has one row
    per agent and the day rollup is read by its first key."""
    if not query.group_by:
        return 1
    filters = dict(query.filters.by_dimension())
    count = 1
    if "agent" in query.group_by or "team" in query.group_by:
        # An agent belongs to one team at a time: agent × team is about one row per agent.
        dimension = "agent" if "agent" in query.group_by else "team"
        if filters[dimension]:
            count = len(filters[dimension])
        else:
            column = agent_team.c.agent_id if dimension == "agent" else agent_team.c.team_id
            stmt = select(func.count(func.distinct(column)))
            if filters["team"]:
                stmt = stmt.where(agent_team.c.team_id.in_(filters["team"]))
            count = max(connection.execute(stmt).scalar_one(), 1)
    if "campaign" in query.group_by:
        if filters["campaign"]:
            campaigns = len(filters["campaign"])
        else:
            first = query.range.start.astimezone(query.zone).date() - timedelta(days=1)
            last = query.range.end.astimezone(query.zone).date() + timedelta(days=1)
            stmt = select(func.count(func.distinct(kpi_day.c.campaign_id))).where(
                kpi_day.c.day >= first, kpi_day.c.day <= last
            )
            campaigns = max(connection.execute(stmt).scalar_one(), 1)
        count *= campaigns
    return count
