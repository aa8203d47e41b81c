"""A digest: the numbers the API answers for a channel's scope and period, to the digit.

Nothing here computes a KPI: totals come from ``MetricsService.metrics`` (as ``/v1/metrics``),
the ranking and its rank changes from ``MetricsService.leaderboard`` (as ``/v1/leaderboard``),
attainment and pace from ``targets.pacing_rows`` (as ``/v1/pacing``). The digest is plain
JSON, the body of a ``webhook`` channel and what every platform's message is rendered from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from services.api.channels.repository import Channel
from services.api.channels.schemas import DigestPeriod, Report
from services.api.metrics import queries
from services.api.metrics.periods import Granularity, Period, resolve_range
from services.api.metrics.queries import Filters
from services.api.metrics.queries import Query as MetricsQuery
from services.api.metrics.service import MetricsService
from services.api.settings import ApiSettings
from services.api.targets.repository import find_targets
from services.api.targets.service import pacing_rows, team_of
from shared.kpis import FLOOR_COUNTERS

TOTALS = (
    *FLOOR_COUNTERS,
    "connect_rate",
    "contact_rate",
    "close_rate",
)
# The KPI each report ranks agents by; the champion (销售冠军) is always the top by sales.
RANKED_BY = {
    Report.daily_ranking: "sales",
    Report.shift_summary: "dials",
    Report.target_pacing: "revenue",
}
CHAMPION_KPI = "sales"


def build_digest(
    connection: Connection,
    settings: ApiSettings,
    subject: Channel,
    period: DigestPeriod,
    as_of: datetime,
) -> dict[str, Any]:
    """The digest of ``subject`` for ``period`` as it stands at ``as_of``."""
    service = MetricsService(settings)
    filters = Filters(team_ids=subject.teams, key_teams=None)
    zone_name = settings.timezone_for(subject.teams)
    zone = ZoneInfo(zone_name)
    rng = resolve_range(
        Period(period.value), None, None, zone, now=as_of, first_weekday=settings.week_start
    )
    query = MetricsQuery(
        (),
        Granularity.none,
        rng,
        filters,
        zone,
        settings.week_start,
        native=zone_name == settings.timezone,
    )
    totals_rows = service.metrics(connection, TOTALS, query)
    totals = totals_rows[0] if totals_rows else {}
    metric = RANKED_BY[subject.report]
    _, ranking = service.leaderboard(connection, metric, rng, filters, limit=None, min_volume=None)
    if metric == CHAMPION_KPI:
        by_sales = ranking
    else:
        _, by_sales = service.leaderboard(
            connection, CHAMPION_KPI, rng, filters, limit=None, min_volume=None
        )
    champions = [
        {"agent_id": r["agent_id"], "team_id": r["team_id"], "sales": r["value"]}
        for r in by_sales
        if r["rank"] == 1 and r["value"] not in (0, None)
    ]
    return {
        "channel": subject.name,
        "report": subject.report.value,
        "lang": subject.lang.value,
        "teams": list(subject.teams),
        "period": period.value,
        "from": rng.start.astimezone(zone).isoformat(),
        "to": rng.end.astimezone(zone).isoformat(),
        "timezone": zone_name,
        "as_of": as_of.astimezone(zone).isoformat(),
        "totals": totals,
        "ranking": {"metric": metric, "rows": ranking},
        "champions": champions,
        "targets": _targets(connection, settings, subject, as_of),
    }


def _targets(
    connection: Connection, settings: ApiSettings, subject: Channel, as_of: datetime
) -> list[dict[str, Any]]:
    """Each team's (or the floor's) targets in force at ``as_of``, with attainment and pace."""
    found = [
        t
        for t in find_targets(connection, active_at=as_of, settings=settings)
        if t.scope in ("team", "floor")
    ]
    roster = queries.agent_teams(connection, None)
    if subject.teams:
        found = [t for t in found if t.scope == "team" and team_of(t, roster) in set(subject.teams)]
    rows = pacing_rows(connection, settings, found, as_of, roster, key_teams=None)
    return [
        {
            "scope": r["scope"],
            "scope_id": r["scope_id"],
            "kpi": r["kpi"],
            "period": r["period"],
            "target": r["value"],
            "actual": r["pacing"]["actual"],
            "attainment": r["pacing"]["attainment"],
            "pace": r["pacing"]["pace"],
            "status": r["pacing"]["status"],
        }
        for r in rows
    ]
