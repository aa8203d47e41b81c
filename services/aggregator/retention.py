"""Retention: minute rows and per-call state past their age are dropped on a schedule.

What is kept: the day rollups (``kpi_day``, ``disposition_day``), which answer whole local
days however old; the lead facts, which distinct-lead counts of any period need; orders,
quotes and stage changes, and the agent-state history. What goes:

- ``kpi_minute`` and ``disposition_minute`` rows older than ``retention_minute_days``, and
  the ``kpi_hour`` rows of the hours wholly before that: after that, ranges are answered from
  whole days, and minute- or hour-grain views (the edges of a range that is not whole days,
  the best time to call) no longer cover that time;
- ``lead_last_minute`` and ``lead_last_hour`` rows older than ``LAST_HORIZON`` and an hour
  (always: no read goes back that far, and no batch writes there);
- the merged state of calls that started more than ``retention_call_state_days`` ago. It is
  what lets a late or repeated event of a call replace what the call counted before; an
  event for a call whose state is gone would count it again. So this age is the latest an
  event may arrive (and the furthest back a replay of dead letters may reach).

Every aggregator process runs it every ``retention_interval_seconds``; each delete is a
small transaction of ``retention_chunk_rows`` rows, so batches never wait on it for long.
A late event for a minute already dropped writes a row there again; the next run drops it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    Table,
    and_,
    cast,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB

from services.aggregator import metrics
from services.aggregator.facts import utc_text
from services.aggregator.settings import AggregatorSettings
from shared.db import transaction
from shared.leadcounts import LAST_HORIZON
from shared.models import (
    disposition_minute,
    entity_state,
    kpi_hour,
    kpi_minute,
    lead_last_hour,
    lead_last_minute,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PurgeResult:
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _call_started_before(engine: Engine, cutoff: datetime) -> ColumnElement[bool]:
    if engine.dialect.name == "postgresql":
        start = cast(entity_state.c.state, JSONB)["start"].astext
    else:
        start = cast(func.json_extract(entity_state.c.state, "$.start"), String)
    # Call states hold their start as fixed-width UTC text: text order is time order.
    return and_(entity_state.c.key.startswith("call:"), start < utc_text(cutoff))


def _delete_in_chunks(
    engine: Engine, table: Table, condition: ColumnElement[bool], chunk: int
) -> int:
    pk = list(table.primary_key.columns)
    deleted = 0
    while True:
        chosen = select(*pk).where(condition).limit(chunk)
        with transaction(engine) as connection:
            count = connection.execute(delete(table).where(tuple_(*pk).in_(chosen))).rowcount
        deleted += count
        if count < chunk:
            return deleted


def purge(engine: Engine, settings: AggregatorSettings, now: datetime | None = None) -> PurgeResult:
    """Drop what is older than the retention settings allow; returns rows deleted per table."""
    now = now or datetime.now(UTC)
    chunk = settings.retention_chunk_rows
    result = PurgeResult()
    if settings.retention_minute_days:
        cutoff = now - timedelta(days=settings.retention_minute_days)
        for table in (kpi_minute, disposition_minute):
            result.deleted[table.name] = _delete_in_chunks(
                engine, table, table.c.bucket < cutoff, chunk
            )
        # Whole hours only: an hour that still has minutes is kept with them.
        result.deleted[kpi_hour.name] = _delete_in_chunks(
            engine, kpi_hour, kpi_hour.c.hour <= cutoff - timedelta(hours=1), chunk
        )
    cutoff = now - LAST_HORIZON - timedelta(hours=1)
    for table, condition in (
        (lead_last_minute, lead_last_minute.c.bucket < cutoff),
        (lead_last_hour, lead_last_hour.c.hour <= cutoff - timedelta(hours=1)),
    ):
        result.deleted[table.name] = _delete_in_chunks(engine, table, condition, chunk)
    if settings.retention_call_state_days:
        cutoff = now - timedelta(days=settings.retention_call_state_days)
        result.deleted[entity_state.name] = _delete_in_chunks(
            engine, entity_state, _call_started_before(engine, cutoff), chunk
        )
    for name, count in result.deleted.items():
        metrics.RETENTION_DELETED.labels(name).inc(count)
    return result


class RetentionSchedule:
    """Runs :func:`purge` every ``retention_interval_seconds`` until stopped."""

    def __init__(self, engine: Engine, settings: AggregatorSettings) -> None:
        self.engine = engine
        self.settings = settings

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.retention_interval_seconds):
            try:
                result = purge(self.engine, self.settings)
            except Exception as exc:  # the database may be away; the next run tries again
                log.warning("retention run failed", extra={"reason": str(exc)[:300]})
                continue
            log.info("retention run", extra={"deleted": result.deleted})

    def start(self, stop: threading.Event) -> threading.Thread | None:
        if not self.settings.retention_interval_seconds:
            return None
        thread = threading.Thread(target=self.run, args=(stop,), name="retention", daemon=True)
        thread.start()
        return thread
