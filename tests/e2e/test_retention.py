"""Retention: minute rows and call state past their age go on a schedule; days stay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import Engine, create_engine, text

from services.aggregator.applier import BatchApplier, Record
from services.aggregator.retention import purge
from services.aggregator.settings import AggregatorSettings
from shared.db import upgrade_database
from tests.floor import generate_floor
from tests.pipeline import TIMEZONE, Pipeline

ZONE = ZoneInfo(TIMEZONE)

NOW = datetime.now(ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
OLD_DAY = NOW - timedelta(days=60)
RECENT_DAY = NOW - timedelta(days=2)


def _floors() -> list[dict[str, Any]]:
    old = generate_floor(71, start=OLD_DAY.replace(hour=9), calls_per_agent=15)
    recent = generate_floor(72, start=RECENT_DAY.replace(hour=9), calls_per_agent=15)
    return old.events + recent.events


def _counts(engine: Engine) -> dict[str, int]:
    cutoff = (NOW - timedelta(days=30)).astimezone(UTC)
    queries = {
        "old_minutes": "SELECT count(*) FROM kpi_minute WHERE bucket < :cutoff",
        "old_disposition_minutes": "SELECT count(*) FROM disposition_minute WHERE bucket < :cutoff",
        "recent_minutes": "SELECT count(*) FROM kpi_minute WHERE bucket >= :cutoff",
        "old_hours": "SELECT count(*) FROM kpi_hour WHERE hour < :cutoff",
        "recent_hours": "SELECT count(*) FROM kpi_hour WHERE hour >= :cutoff",
        "days": "SELECT count(*) FROM kpi_day",
        "day_dials": "SELECT coalesce(sum(dials), 0) FROM kpi_day",
        "lead_facts": "SELECT count(*) FROM lead_fact",
        "call_states": "SELECT count(*) FROM entity_state WHERE key LIKE 'call:%'",
        "other_states": "SELECT count(*) FROM entity_state WHERE key NOT LIKE 'call:%'",
    }
    with engine.connect() as connection:
        return {
            name: int(connection.execute(text(sql), {"cutoff": cutoff}).scalar_one())
            for name, sql in queries.items()
        }


def _day_view(pipeline: Pipeline, day: datetime, granularity: str) -> list[dict[str, Any]]:
    body = pipeline.metrics(
        metrics="dials,connects,talk_seconds,revenue,leads_dialed,dispositions",
        group_by="agent",
        granularity=granularity,
        **{"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
    )
    rows: list[dict[str, Any]] = body["rows"]
    return rows


def test_the_aggregator_drops_old_minutes_and_call_state_on_a_schedule(
    pipeline: Pipeline,
) -> None:
    events = _floors()
    pipeline.post(events)
    pipeline.wait_caught_up()
    engine = create_engine(pipeline.database_url)
    try:
        before = _counts(engine)
        old_days = _day_view(pipeline, OLD_DAY, "day")
        recent_hours = _day_view(pipeline, RECENT_DAY, "hour")
        assert before["old_minutes"] > 0 and before["recent_minutes"] > 0
        assert before["old_hours"] > 0 and before["recent_hours"] > 0
        assert old_days and recent_hours

        pipeline.stop("aggregator")
        pipeline.start_aggregator(
            CALLBOARD_RETENTION_INTERVAL_SECONDS="0.5",
            CALLBOARD_RETENTION_MINUTE_DAYS="30",
            CALLBOARD_RETENTION_CALL_STATE_DAYS="30",
            CALLBOARD_RETENTION_CHUNK_ROWS="100",  # several small transactions
        )
        deadline = time.monotonic() + 60
        while (after := _counts(engine))["old_minutes"] or after["call_states"] == before[
            "call_states"
        ]:
            assert time.monotonic() < deadline, (before, after, pipeline.log("aggregator")[-2000:])
            time.sleep(0.5)
        time.sleep(1.5)  # a run or two more: nothing else goes
        after = _counts(engine)
    finally:
        engine.dispose()

    assert after["old_disposition_minutes"] == 0
    assert after["recent_minutes"] == before["recent_minutes"]
    assert after["old_hours"] == 0
    assert after["recent_hours"] == before["recent_hours"]
    for kept in ("days", "day_dials", "lead_facts", "other_states"):
        assert after[kept] == before[kept], kept
    # Half the call states were the old day's.
    assert 0 < after["call_states"] < before["call_states"]
    # Whole days are still answered, from the day rollups; recent hours from the minutes.
    assert _day_view(pipeline, OLD_DAY, "day") == old_days
    assert _day_view(pipeline, RECENT_DAY, "hour") == recent_hours
    # The old day's hourly counters went with its minutes; its lead facts (distinct leads by
    # hour) are kept.
    old_hours = _day_view(pipeline, OLD_DAY, "hour")
    assert old_hours and all(row["dials"] == row["talk_seconds"] == 0 for row in old_hours)
    assert all(row["dispositions"] == {} for row in old_hours)
    assert sum(row["leads_dialed"] for row in old_hours) > 0


class _Sink:
    def send(self, letters: Any) -> None:
        assert not letters


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'retention.db'}"
    upgrade_database(url)
    engine = create_engine(url)
    yield url, engine
    engine.dispose()


def test_purge_on_sqlite(sqlite_engine: tuple[str, Engine]) -> None:
    url, engine = sqlite_engine
    settings = AggregatorSettings(
        database_url=url,
        timezone=TIMEZONE,
        retention_minute_days=30,
        retention_call_state_days=30,
        retention_chunk_rows=50,
    )
    records = [Record(0, i, orjson.dumps(e)) for i, e in enumerate(_floors())]
    BatchApplier(engine, settings, _Sink()).apply(records)
    before = _counts(engine)

    result = purge(engine, settings, now=NOW.astimezone(UTC))
    after = _counts(engine)
    assert result.deleted["kpi_minute"] == before["old_minutes"] > 0
    assert result.deleted["disposition_minute"] == before["old_disposition_minutes"] > 0
    assert result.deleted["kpi_hour"] == before["old_hours"] > 0
    assert result.deleted["entity_state"] == before["call_states"] - after["call_states"] > 0
    assert after["old_minutes"] == after["old_disposition_minutes"] == after["old_hours"] == 0
    for kept in (
        "recent_minutes",
        "recent_hours",
        "days",
        "day_dials",
        "lead_facts",
        "other_states",
    ):
        assert after[kept] == before[kept], kept
    assert purge(engine, settings, now=NOW.astimezone(UTC)).total == 0
