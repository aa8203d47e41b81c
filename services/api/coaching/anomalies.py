"""Anomalies (异常波动): each agent's KPIs today against the same weekday of the previous four
weeks, over the same part of the day.

Today runs from local midnight to ``as_of``; each baseline day over the same hours, so a
morning is never compared with whole days. A baseline day on which the agent did nothing
(no call, no sale) is a day off and left out; an agent needs three baseline days to be
judged. How far is far is ``shared.playbook.deviation``: three spreads, the spread being at
least 10 % of the baseline mean and the KPI's own minimum below. Ratios are judged only where
today and the baseline average have the leaderboard's minimum volume (their denominator).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from services.api.metrics import queries
from services.api.metrics.periods import Granularity, TimeRange
from services.api.metrics.queries import Filters, Query
from services.api.metrics.service import MetricsService
from services.api.settings import ApiSettings
from services.api.targets.rules import amount
from shared.kpis import RATIO_BY_KEY, volume_key
from shared.playbook import ANOMALY_MIN_BASELINE_DAYS, ANOMALY_Z, deviation
from shared.timeutil import floor_minute, local_midnight

BASELINE_WEEKS = 4
# The smallest spread per KPI: one call, one sale, a minute of talk, one currency unit,
# five points of a rate.
MIN_SPREAD: dict[str, Decimal] = {
    "dials": Decimal(1),
    "connects": Decimal(1),
    "talk_seconds": Decimal(60),
    "sales": Decimal(1),
    "revenue": Decimal(1),
    "connect_rate": Decimal("0.05"),
    "contact_rate": Decimal("0.05"),
}
ANOMALY_KPIS = tuple(MIN_SPREAD)
_ACTIVITY = ("dials", "inbound_calls", "sales")


def _ranges(as_of: datetime, settings: ApiSettings) -> list[TimeRange]:
    """Today so far, then the same hours of the same weekday 1..4 weeks before."""
    end = floor_minute(as_of)
    day = end.astimezone(settings.zone).date()
    elapsed = end - local_midnight(day, settings.zone)
    out = []
    for weeks in range(BASELINE_WEEKS + 1):
        start = local_midnight(day - timedelta(weeks=weeks), settings.zone)
        out.append(TimeRange(start, start + elapsed))
    return out


def find_anomalies(
    connection: Connection,
    settings: ApiSettings,
    as_of: datetime,
    filters: Filters,
    *,
    everything: bool = False,
) -> dict[str, Any]:
    """The agents' far-off KPIs today (every KPI judged with ``everything``)."""
    ranges = _ranges(as_of, settings)
    needed = sorted(
        {
            *ANOMALY_KPIS,
            *_ACTIVITY,
            *(volume_key(k) for k in ANOMALY_KPIS if k in RATIO_BY_KEY),
        }
    )
    service = MetricsService(settings)
    days: list[dict[str, dict[str, Any]]] = []
    for rng in ranges:
        if rng.end <= rng.start:
            days.append({})
            continue
        query = Query(
            ("agent",), Granularity.none, rng, filters, settings.zone, settings.week_start
        )
        rows = service.metric_rows(connection, needed, query)
        days.append({row.key[0]: row.values for row in rows if row.key[0] is not None})
    today, baseline_days = days[0], days[1:]
    roster = queries.agent_teams(connection, filters.key_teams)
    min_volume = Decimal(settings.leaderboard_min_volume)
    agents = []
    for agent_id in sorted(set(today).union(*baseline_days)):
        worked = [d[agent_id] for d in baseline_days if _active(d.get(agent_id))]
        if len(worked) < ANOMALY_MIN_BASELINE_DAYS:
            continue
        mine = today.get(agent_id, {})
        flagged = []
        for kpi in ANOMALY_KPIS:
            if kpi in RATIO_BY_KEY:
                volume = volume_key(kpi)
                volume_today = Decimal(mine.get(volume) or 0)
                volumes = [Decimal(d.get(volume) or 0) for d in worked]
                if volume_today < min_volume or sum(volumes) / len(volumes) < min_volume:
                    continue
                values = [d.get(kpi) for d in worked]
                if any(v is None for v in values) or mine.get(kpi) is None:
                    continue
            value = Decimal(mine.get(kpi) or 0)
            baseline = [Decimal(d.get(kpi) or 0) for d in worked]
            result = deviation(value, baseline, MIN_SPREAD[kpi])
            if result.far or everything:
                flagged.append(
                    {
                        "kpi": kpi,
                        "today": amount(kpi, value),
                        "baseline": [amount(kpi, v) for v in baseline],
                        "baseline_mean": amount(kpi, result.baseline_mean),
                        "spread": amount(kpi, result.spread),
                        "z": round(float(result.z), 2),
                        "direction": "above" if result.z > 0 else "below",
                        "far": result.far,
                    }
                )
        if flagged:
            agents.append({"agent_id": agent_id, "team_id": roster.get(agent_id), "kpis": flagged})
    return {
        "as_of": floor_minute(as_of).astimezone(settings.zone).isoformat(),
        "today": {
            "from": ranges[0].start.astimezone(settings.zone).isoformat(),
            "to": ranges[0].end.astimezone(settings.zone).isoformat(),
        },
        "baseline_days": [r.start.astimezone(settings.zone).date().isoformat() for r in ranges[1:]],
        "rule": (
            f"|z| ≥ {ANOMALY_Z}, z = (today − mean of the baseline days) / spread, spread = "
            "max(sample standard deviation, 10 % of the mean, the KPI's minimum); at least "
            f"{ANOMALY_MIN_BASELINE_DAYS} baseline days worked"
        ),
        "agents": agents,
    }


def _active(values: dict[str, Any] | None) -> bool:
    return values is not None and any(Decimal(values.get(k) or 0) > 0 for k in _ACTIVITY)
