"""Prometheus metrics of the read API: the aggregator group's lag, per partition.

The API observes lag (``services.api.operations.lag``) every few seconds, so its ``/metrics``
is where Prometheus finds lag; HTTP latency by route comes from ``shared.http``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, event

LAG_EVENTS = Gauge(
    "callboard_consumer_lag_events",
    "Events in the topic not yet applied to the KPI tables",
    ["topic", "partition"],
)
LAG_SECONDS = Gauge(
    "callboard_consumer_lag_seconds",
    "Age of the oldest event not yet applied",
    ["topic", "partition"],
)
LAG_STATUS = Gauge(
    "callboard_consumer_lag_status",
    "Lag status: 0 ok, 1 warning (lag growing), 2 stalled, 3 error (consumer stopped)",
    ["topic", "partition"],
)
COMMITTED_OFFSET = Gauge(
    "callboard_consumer_committed_offset",
    "Next offset to apply, as stored with the numbers",
    ["topic", "partition"],
)

# What the live stream costs: its work must follow the commits and the distinct views, not
# the number of open boards.
DATABASE_QUERIES = Counter(
    "callboard_api_database_queries", "SQL statements the API process sent to the database"
)
STREAM_COMMITS = Counter(
    "callboard_api_stream_commits", "Aggregator commits the API's change feed learned of"
)
STREAM_COMPUTATIONS = Counter(
    "callboard_api_stream_view_computations",
    "Stream views computed (one per distinct view and change, shared by its streams)",
)
OPEN_STREAMS = Gauge("callboard_api_open_streams", "Open /v1/stream connections")


def count_queries(engine: Engine) -> None:
    """Count every statement ``engine`` sends (``callboard_api_database_queries``)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: object) -> None:
        DATABASE_QUERIES.inc()
