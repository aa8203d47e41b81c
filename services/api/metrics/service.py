"""Metrics and leaderboards: base values from the queries, KPIs from ``shared.kpis``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from services.api.metrics import queries
from services.api.metrics.periods import Granularity, TimeRange, bucket_count
from services.api.metrics.queries import Bucket, Filters, Query, RowKey
from services.api.settings import ApiSettings
from shared.errors import InvalidInput
from shared.kpis import (
    ALL_KPI_KEYS,
    COUNTER_KEYS,
    DEFAULT_METRICS,
    DISPOSITIONS,
    LEAD_COUNT_KEYS,
    LOGGED_IN_SECONDS,
    MONEY_COUNTERS,
    RATIO_BY_KEY,
    RESOLVED_FIRST_CALL,
    Unit,
    base_keys_for,
    compute_kpis,
    volume_key,
)
from shared.timeutil import local_midnight

GROUPS = ("agent", "team", "campaign")
_GRANULARITY_ORDER = list(Granularity)


def parse_metrics(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return DEFAULT_METRICS
    keys = tuple(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    if not keys:
        return DEFAULT_METRICS
    unknown = [k for k in keys if k not in ALL_KPI_KEYS]
    if unknown:
        raise InvalidInput(
            f"unknown metric {', '.join(unknown)}; the KPI keys are listed in kpis.md",
            details={"unknown": unknown, "valid": list(ALL_KPI_KEYS)},
        )
    return keys


def parse_group_by(raw: str | None) -> tuple[str, ...]:
    if not raw or raw == "none":
        return ()
    groups = tuple(dict.fromkeys(g.strip() for g in raw.split(",") if g.strip()))
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InvalidInput(
            f"cannot group by {', '.join(unknown)}; group_by takes agent, team, campaign"
        )
    # A stable column order whatever order the caller gave.
    return tuple(g for g in GROUPS if g in groups)


def check_rankable(metric: str) -> None:
    """Refuse (422) a leaderboard KPI agents cannot be ranked by."""
    if metric == DISPOSITIONS or metric not in ALL_KPI_KEYS:
        raise InvalidInput(
            f"cannot rank by {metric!r}; use a KPI key from kpis.md",
            details={"valid": [k for k in ALL_KPI_KEYS if k != DISPOSITIONS]},
        )


def money_text(amount: Decimal) -> str:
    """Money as a decimal string with at least two places: ``"1250.00"``."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -2:
        amount = amount.quantize(Decimal("0.01"))
    return format(amount, "f")


def present(key: str, value: Any) -> Any:
    """A KPI value as JSON: money as a decimal string, other numbers as numbers."""
    if value is None or isinstance(value, dict):
        return value
    ratio = RATIO_BY_KEY.get(key)
    if key in MONEY_COUNTERS or (ratio is not None and ratio.unit is Unit.money):
        return money_text(Decimal(value))
    if ratio is not None:
        return float(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def present_bucket(bucket: Bucket, query: Query) -> str | None:
    if bucket is None:
        return None
    if isinstance(bucket, datetime):
        return bucket.astimezone(query.zone).isoformat()
    return local_midnight(bucket, query.zone).astimezone(query.zone).isoformat()


@dataclass(frozen=True, slots=True)
class MetricRow:
    key: RowKey
    values: dict[str, Any]


def _per_campaign(query: Query) -> bool:
    """Whether the rows are campaigns' (grouped or filtered by campaign)."""
    return "campaign" in query.group_by or bool(query.filters.campaign_ids)


class MetricsService:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings

    def base_values(
        self, connection: Connection, needed: set[str], query: Query, with_dispositions: bool
    ) -> dict[RowKey, dict[str, Any]]:
        rows: dict[RowKey, dict[str, Any]] = {}

        def merge(part: dict[RowKey, dict[str, Any]]) -> None:
            for key, values in part.items():
                rows.setdefault(key, {}).update(values)

        merge(queries.counter_sums(connection, [k for k in COUNTER_KEYS if k in needed], query))
        merge(queries.lead_counts(connection, [k for k in LEAD_COUNT_KEYS if k in needed], query))
        if LOGGED_IN_SECONDS in needed and not _per_campaign(query):
            now = datetime.now(UTC)
            logged = queries.logged_in_seconds(connection, query, now)
            merge({k: {LOGGED_IN_SECONDS: v} for k, v in logged.items()})
        if RESOLVED_FIRST_CALL in needed:
            resolved = queries.resolved_first_calls(connection, query)
            merge({k: {RESOLVED_FIRST_CALL: v} for k, v in resolved.items()})
        if with_dispositions:
            dispositions = queries.disposition_counts(connection, query)
            merge({k: {DISPOSITIONS: v} for k, v in dispositions.items()})
        if not rows and not query.group_by and query.granularity is Granularity.none:
            rows[(None,)] = {}
        return rows

    def metric_rows(
        self, connection: Connection, metrics: Sequence[str], query: Query
    ) -> list[MetricRow]:
        needed = base_keys_for(list(metrics))
        base = self.base_values(connection, needed, query, DISPOSITIONS in metrics)
        if _per_campaign(query):
            # Time logged in belongs to an agent, not to a campaign.
            for values in base.values():
                values[LOGGED_IN_SECONDS] = None
        out = []
        for key in sorted(base, key=_sort_key):
            values = base[key]
            kpis = compute_kpis(list(metrics), _zero_filled(values, needed))
            if DISPOSITIONS in metrics:
                kpis[DISPOSITIONS] = values.get(DISPOSITIONS, {})
            if LOGGED_IN_SECONDS in metrics and values.get(LOGGED_IN_SECONDS, 0) is None:
                kpis[LOGGED_IN_SECONDS] = None
            out.append(MetricRow(key, kpis))
        return out

    def check_answer_size(self, connection: Connection, query: Query) -> None:
        """Refuse, before reading anything heavy, an answer of more buckets × groups than
        ``CALLBOARD_MAX_ANSWER_ROWS``, saying what to ask for instead."""
        cap = self.settings.max_answer_rows
        buckets = bucket_count(query.range, query.granularity, query.zone)
        if buckets <= cap and buckets * (groups := queries.group_count(connection, query)) <= cap:
            return
        groups = 1 if buckets > cap else groups
        rows = buckets * groups
        coarser = [
            g.value
            for g in Granularity
            if query.granularity is not Granularity.none
            and _GRANULARITY_ORDER.index(g) > _GRANULARITY_ORDER.index(query.granularity)
            and bucket_count(query.range, g, query.zone) * groups <= cap
        ]
        instead = [f"a coarser granularity ({', '.join(coarser)})"] if coarser else []
        if query.granularity is not Granularity.none:
            most = max(cap // groups, 1)
            instead.append(f"a shorter range (at most {most:,} {query.granularity.value} buckets)")
        if query.group_by:
            instead.append("fewer groups (filter by agent_id, team_id or campaign_id)")
        raise InvalidInput(
            f"this answer would hold up to {rows:,} rows ({buckets:,} "
            f"{query.granularity.value} buckets × {groups:,} groups); an answer holds at most "
            f"{cap:,} (CALLBOARD_MAX_ANSWER_ROWS): ask for " + " or ".join(instead),
            details={
                "max_rows": cap,
                "rows": rows,
                "buckets": buckets,
                "groups": groups,
                "coarser_granularities": coarser,
            },
        )

    def metrics(
        self, connection: Connection, metrics: Sequence[str], query: Query
    ) -> list[dict[str, Any]]:
        self.check_answer_size(connection, query)
        rows = []
        for row in self.metric_rows(connection, metrics, query):
            out: dict[str, Any] = {}
            for name, value in zip(query.group_by, row.key[:-1], strict=True):
                out[f"{name}_id"] = value
            if query.granularity is not Granularity.none:
                out["bucket"] = present_bucket(row.key[-1], query)
            out.update({k: present(k, v) for k, v in row.values.items()})
            rows.append(out)
        return rows

    def leaderboard(
        self,
        connection: Connection,
        metric: str,
        rng: TimeRange,
        filters: Filters,
        *,
        limit: int | None,
        min_volume: int | None,
        ascending: bool = False,
    ) -> tuple[int, list[dict[str, Any]]]:
        """The effective minimum volume and the ranked rows."""
        check_rankable(metric)
        if min_volume is None:
            min_volume = self.settings.leaderboard_min_volume if metric in RATIO_BY_KEY else 0
        zone_name = self.settings.timezone_for(filters.team_ids)
        query = Query(
            ("agent",),
            Granularity.none,
            rng,
            filters,
            ZoneInfo(zone_name),
            self.settings.week_start,
            native=zone_name == self.settings.timezone,
        )
        current = self._ranked(connection, metric, query, min_volume, ascending)
        previous = self._ranked(
            connection, metric, replace(query, range=rng.previous()), min_volume, ascending
        )
        # The team as the key knows the agent: a key limited to teams is never told of another.
        teams = queries.agent_teams(connection, filters.key_teams)
        rows = []
        for agent_id, (rank, value, volume) in current.items():
            before = previous.get(agent_id)
            rows.append(
                {
                    "rank": rank,
                    "agent_id": agent_id,
                    "team_id": teams.get(agent_id),
                    "value": present(metric, value),
                    "volume": present(volume_key(metric), volume),
                    "previous_rank": before[0] if before else None,
                    "rank_change": before[0] - rank if before else None,
                }
            )
        rows.sort(key=lambda r: (r["rank"], r["agent_id"]))
        return min_volume, rows[:limit] if limit is not None else rows

    def ranked(
        self, connection: Connection, metric: str, query: Query, min_volume: int, ascending: bool
    ) -> dict[str, tuple[int, Any, Any]]:
        """The leaderboard's ranking of the rows of ``query`` (grouped by one dimension):
        each row's rank (ties share one: 1, 2, 2, 4), value and volume; the rows below
        ``min_volume`` are left out."""
        return self._ranked(connection, metric, query, min_volume, ascending)

    def _ranked(
        self, connection: Connection, metric: str, query: Query, min_volume: int, ascending: bool
    ) -> dict[str, tuple[int, Any, Any]]:
        volume = volume_key(metric)
        metrics = [metric] if volume == metric else [metric, volume]
        if volume not in ALL_KPI_KEYS:
            metrics = [metric]
        rows = self.metric_rows(connection, metrics, query)
        candidates = []
        for row in rows:
            agent_id = row.key[0]
            value = row.values.get(metric)
            if agent_id is None or value is None:
                continue
            row_volume = row.values.get(volume, value)
            if row_volume is None or Decimal(row_volume) < min_volume:
                continue
            candidates.append((agent_id, Decimal(value), row_volume, value))
        candidates.sort(key=lambda c: c[1] if ascending else -c[1])
        ranked: dict[str, tuple[int, Any, Any]] = {}
        previous_value: Decimal | None = None
        rank = 0
        for position, (agent_id, sort_value, row_volume, value) in enumerate(candidates, 1):
            if sort_value != previous_value:
                rank = position
                previous_value = sort_value
            ranked[agent_id] = (rank, value, row_volume)
        return ranked


def _zero_filled(values: dict[str, Any], needed: set[str]) -> dict[str, Any]:
    return {k: values.get(k, 0) for k in needed} | {
        k: v for k, v in values.items() if k not in needed
    }


def _sort_key(key: RowKey) -> tuple[str, ...]:
    return tuple(v.isoformat() if isinstance(v, (datetime, date)) else str(v or "") for v in key)
