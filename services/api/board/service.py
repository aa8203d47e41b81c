"""What the wallboard shows, read from the KPI tables: every agent's state now with its
call in progress and today's counts, and the sales each commit counts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, select

from services.api.metrics import queries
from services.api.metrics.periods import Granularity, Period, TimeRange, resolve_range
from services.api.metrics.queries import Filters, Query
from services.api.metrics.service import MetricsService, money_text
from services.api.settings import ApiSettings
from services.api.targets.repository import Target, calendar_for_team, calendars, find_targets
from services.api.targets.rules import DEFAULT_CALENDAR_NAME
from shared.kpis import from_stored
from shared.models import agent_state_change, lead_fact, sale_feed
from shared.playbook import working_seconds
from shared.timeutil import as_utc, local_midnight

TODAY_METRICS = ("dials", "connects", "sales", "revenue")
# A call in progress is the agent's newest call that started at most this long before the
# agent went on_call (dialers send the two together).
CALL_LEAD_SECONDS = 60
# How far back a board's first look for the sales it should announce reaches, and how
# late a sale may be counted and still be news (a replay or a rebuild counts old sales
# again: they are not announced).
SALE_WINDOW_SECONDS = 120
SALE_NEWS_SECONDS = 900


@dataclass(frozen=True, slots=True)
class StateRun:
    state: str
    since: datetime
    reason: str | None
    latest: datetime


def _iso(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat() if value is not None else None


def _roster(connection: Connection, filters: Filters) -> dict[str, str | None]:
    """Agents in scope and their teams: the roster (the team their latest event named), or
    for a key limited to teams, the agents its teams' records name (never the roster, which
    one posted event could change)."""
    teams = queries.agent_teams(connection, filters.key_teams)
    return {
        agent_id: team_id or None
        for agent_id, team_id in teams.items()
        if (not filters.team_ids or team_id in filters.team_ids)
        and (not filters.agent_ids or agent_id in filters.agent_ids)
    }


def _state_runs(connection: Connection, agents: list[str], cutoff: datetime) -> dict[str, StateRun]:
    """Each agent's current state (its newest ``agent.state_changed``) and since when the
    agent has been in it with that reason: changes that repeat the state do not reset it."""
    table = agent_state_change
    changes: dict[str, list[Any]] = {}
    for start in range(0, len(agents), 500):
        chunk = agents[start : start + 500]
        rows = connection.execute(
            select(table.c.agent_id, table.c.state, table.c.reason, table.c.occurred_at)
            .where(table.c.agent_id.in_(chunk), table.c.occurred_at >= cutoff)
            .order_by(table.c.agent_id, table.c.occurred_at, table.c.event_id)
        )
        for row in rows:
            changes.setdefault(row.agent_id, []).append(row)
        older = [a for a in chunk if a not in changes]
        if older:
            latest = (
                select(table.c.agent_id, func.max(table.c.occurred_at).label("at"))
                .where(table.c.agent_id.in_(older), table.c.occurred_at < cutoff)
                .group_by(table.c.agent_id)
                .subquery()
            )
            rows = connection.execute(
                select(table.c.agent_id, table.c.state, table.c.reason, table.c.occurred_at)
                .join(
                    latest,
                    and_(
                        latest.c.agent_id == table.c.agent_id,
                        latest.c.at == table.c.occurred_at,
                    ),
                )
                .order_by(table.c.agent_id, table.c.occurred_at, table.c.event_id)
            )
            for row in rows:
                changes.setdefault(row.agent_id, []).append(row)
    runs: dict[str, StateRun] = {}
    for agent_id, history in changes.items():
        last = history[-1]
        since = as_utc(last.occurred_at)
        for row in reversed(history[:-1]):
            if (row.state, row.reason) != (last.state, last.reason):
                break
            since = as_utc(row.occurred_at)
        runs[agent_id] = StateRun(last.state, since, last.reason, as_utc(last.occurred_at))
    return runs


def _calls_in_progress(
    connection: Connection, on_call: dict[str, datetime]
) -> dict[str, tuple[str, datetime]]:
    """The call each on_call agent is on: its newest call (with a lead) that started no
    earlier than CALL_LEAD_SECONDS before the agent went on_call."""
    if not on_call:
        return {}
    earliest = min(on_call.values()) - timedelta(seconds=CALL_LEAD_SECONDS)
    rows = connection.execute(
        select(lead_fact.c.agent_id, lead_fact.c.source, lead_fact.c.occurred_at)
        .where(
            lead_fact.c.fact.in_(("dialed", "inbound")),
            lead_fact.c.occurred_at >= earliest,
            lead_fact.c.agent_id.in_(list(on_call)),
        )
        .order_by(lead_fact.c.occurred_at, lead_fact.c.source)
    )
    calls: dict[str, tuple[str, datetime]] = {}
    for row in rows:
        started = as_utc(row.occurred_at)
        if started >= on_call[row.agent_id] - timedelta(seconds=CALL_LEAD_SECONDS):
            calls[row.agent_id] = (row.source.removeprefix("call:"), started)
    return calls


def agents_now(
    connection: Connection, settings: ApiSettings, filters: Filters, now: datetime
) -> dict[str, Any]:
    """The ``/v1/agents/now`` body: every agent in scope, sorted by agent id."""
    zone_name = settings.timezone_for(filters.team_ids)
    zone = ZoneInfo(zone_name)
    today = resolve_range(Period.today, None, None, zone, now=now)
    roster = _roster(connection, filters)
    query = Query(
        ("agent",),
        Granularity.none,
        today,
        filters,
        zone,
        settings.week_start,
        native=zone_name == settings.timezone,
    )
    counts = {
        row["agent_id"]: row
        for row in MetricsService(settings).metrics(connection, TODAY_METRICS, query)
    }
    if filters.campaign_ids:
        # Agents of those campaigns: those with counts in them today.
        roster = {a: t for a, t in roster.items() if a in counts}
    agents = sorted(roster)
    runs = _state_runs(connection, agents, today.start - timedelta(days=1))
    on_call = {a: r.since for a, r in runs.items() if r.state == "on_call"}
    calls = _calls_in_progress(connection, on_call)
    last_counted = _last_counted(connection, agents, today.start)
    quiet_after = settings.agent_quiet_seconds
    out = []
    for agent_id in agents:
        run = runs.get(agent_id)
        state = run.state if run is not None else "logged_out"
        moments = [m for m in (run.latest if run else None, last_counted.get(agent_id)) if m]
        last_event = max(moments) if moments else None
        call = calls.get(agent_id) if state == "on_call" else None
        today_row = counts.get(agent_id, {})
        out.append(
            {
                "agent_id": agent_id,
                "team_id": roster[agent_id],
                "state": state,
                "since": _iso(run.since if run else None, zone),
                "reason": run.reason if run else None,
                "call": None
                if call is None
                else {
                    "call_id": call[0],
                    "started_at": _iso(call[1], zone),
                    "seconds": max(0, int((now - call[1]).total_seconds())),
                },
                "today": {
                    "dials": today_row.get("dials", 0),
                    "connects": today_row.get("connects", 0),
                    "sales": today_row.get("sales", 0),
                    "revenue": today_row.get("revenue", "0.00"),
                },
                "last_event_at": _iso(last_event, zone),
                "quiet": state != "logged_out"
                and (last_event is None or (now - last_event).total_seconds() >= quiet_after),
            }
        )
    return {
        "as_of": now.astimezone(zone).isoformat(),
        "timezone": zone_name,
        "quiet_after_seconds": quiet_after,
        "agents": out,
    }


def _last_counted(
    connection: Connection, agents: list[str], since: datetime
) -> dict[str, datetime]:
    """Each agent's newest call, quote, sale or stage change today (its lead facts)."""
    if not agents:
        return {}
    rows = connection.execute(
        select(lead_fact.c.agent_id, func.max(lead_fact.c.occurred_at).label("at"))
        .where(lead_fact.c.occurred_at >= since, lead_fact.c.agent_id.in_(agents))
        .group_by(lead_fact.c.agent_id)
    )
    return {row.agent_id: as_utc(row.at) for row in rows}


def recent_sales(connection: Connection, filters: Filters, now: datetime) -> list[dict[str, Any]]:
    """Sales counted in the last SALE_WINDOW_SECONDS, oldest first, with their cursor
    (``counted``: microseconds since the epoch of the commit that counted them)."""
    table = sale_feed
    stmt = select(table).where(table.c.counted_at >= now - timedelta(seconds=SALE_WINDOW_SECONDS))
    for column, values in (
        (table.c.agent_id, filters.agent_ids),
        (table.c.team_id, filters.team_ids),
        (table.c.campaign_id, filters.campaign_ids),
    ):
        if values:
            stmt = stmt.where(column.in_(values))
    out = []
    for row in connection.execute(stmt.order_by(table.c.counted_at, table.c.seq)):
        counted = as_utc(row.counted_at)
        occurred = as_utc(row.occurred_at)
        if counted - occurred > timedelta(seconds=SALE_NEWS_SECONDS):
            continue
        out.append(
            {
                "cursor": int(counted.timestamp() * 1_000_000),
                "seq": row.seq,
                "sale": {
                    "order_id": row.order_id,
                    "agent_id": row.agent_id,
                    "team_id": row.team_id or None,
                    "campaign_id": row.campaign_id or None,
                    "amount": money_text(Decimal(from_stored("revenue", row.amount))),
                    "occurred_at": occurred.isoformat(),
                },
            }
        )
    return out


PACE_KPIS = ("sales", "revenue")
# Of the targets of one scope and KPI that run today, the shortest period's applies.
PERIOD_ORDER = ("day", "week", "month", "quarter", "year")


def _hour_starts(day: date, zone: ZoneInfo) -> list[datetime]:
    """The 25 instants that start local hours 0..23 of ``day`` and the next midnight."""
    starts = [datetime.combine(day, time(hour), tzinfo=zone) for hour in range(24)]
    return [*(s.astimezone(UTC) for s in starts), local_midnight(day + timedelta(days=1), zone)]


def _hourly(
    connection: Connection, settings: ApiSettings, filters: Filters, zone_name: str, day: date
) -> dict[int, dict[str, Any]]:
    zone = ZoneInfo(zone_name)
    rng = TimeRange(local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone))
    query = Query(
        (),
        Granularity.hour,
        rng,
        filters,
        zone,
        settings.week_start,
        native=zone_name == settings.timezone,
    )
    rows = MetricsService(settings).metrics(connection, PACE_KPIS, query)
    return {datetime.fromisoformat(row["bucket"]).astimezone(zone).hour: row for row in rows}


def _needed(
    connection: Connection,
    settings: ApiSettings,
    filters: Filters,
    zone: ZoneInfo,
    day: date,
    now: datetime,
) -> tuple[dict[str, list[Decimal] | None], dict[str, Decimal | None]]:
    """Per KPI, what the targets that apply need in each local hour of ``day``, and in the
    whole day: each target's value spread over its period's working time (the team's
    working calendar), summed over the scopes asked; ``None`` where no target applies."""
    if filters.campaign_ids:
        scope, ids = "campaign", list(filters.campaign_ids)
    elif filters.team_ids:
        scope, ids = "team", list(filters.team_ids)
    else:
        scope, ids = "floor", [""]
    found = find_targets(
        connection,
        scope=scope,
        scope_ids=ids,
        kpis=PACE_KPIS,
        active_at=now,
        settings=settings,
    )
    applying: dict[tuple[str, str], Target] = {}
    for candidate in found:
        key = (candidate.scope_id, candidate.kpi)
        known = applying.get(key)
        rank = PERIOD_ORDER.index(candidate.period.value)
        if known is None or rank < PERIOD_ORDER.index(known.period.value):
            applying[key] = candidate
    known_calendars = calendars(connection)
    bounds = _hour_starts(day, zone)
    hours: dict[str, list[Decimal] | None] = dict.fromkeys(PACE_KPIS)
    whole: dict[str, Decimal | None] = dict.fromkeys(PACE_KPIS)
    for (scope_id, kpi), subject in sorted(applying.items()):
        team = scope_id if scope == "team" else DEFAULT_CALENDAR_NAME
        calendar = calendar_for_team(known_calendars, team)
        period = subject.range(settings)
        period_seconds = working_seconds(calendar, zone, period.start, period.end)
        if period_seconds == 0:
            continue
        per_second = subject.value / period_seconds
        spread = [
            per_second * working_seconds(calendar, zone, start, end)
            for start, end in itertools.pairwise(bounds)
        ]
        before = hours[kpi] or [Decimal(0)] * 24
        hours[kpi] = [a + b for a, b in zip(before, spread, strict=True)]
        whole[kpi] = (whole[kpi] or Decimal(0)) + sum(spread, Decimal(0))
    return hours, whole


def _count(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(Decimal("0.01")))


def _money(value: Decimal | None) -> str | None:
    return None if value is None else money_text(value.quantize(Decimal("0.01")))


def pace_hourly(
    connection: Connection, settings: ApiSettings, filters: Filters, now: datetime
) -> dict[str, Any]:
    """The ``/v1/pace/hourly`` body: today's sales and revenue per local hour (not
    cumulative), yesterday's beside them, and what today's targets need each hour."""
    zone_name = settings.timezone_for(filters.team_ids)
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    current = _hourly(connection, settings, filters, zone_name, today)
    before = _hourly(connection, settings, filters, zone_name, today - timedelta(days=1))
    needed, whole = _needed(connection, settings, filters, zone, today, now)
    hours = []
    for hour in range(24):
        row, earlier = current.get(hour, {}), before.get(hour, {})
        sales_needed, revenue_needed = needed["sales"], needed["revenue"]
        hours.append(
            {
                "hour": hour,
                "sales": row.get("sales", 0),
                "revenue": row.get("revenue", "0.00"),
                "yesterday_sales": earlier.get("sales", 0),
                "yesterday_revenue": earlier.get("revenue", "0.00"),
                "needed_sales": _count(sales_needed[hour]) if sales_needed else None,
                "needed_revenue": _money(revenue_needed[hour]) if revenue_needed else None,
            }
        )
    return {
        "date": today.isoformat(),
        "timezone": zone_name,
        "hours": hours,
        "target": {"sales": _count(whole["sales"]), "revenue": _money(whole["revenue"])},
    }


def utc_now() -> datetime:
    return datetime.now(UTC)
