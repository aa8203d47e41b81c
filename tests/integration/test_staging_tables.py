"""Bulk upserts stage their rows in session temp tables that empty themselves.

A staging table is created once per database session and emptied by the end of each
transaction (ON COMMIT DELETE ROWS, or the rollback); staged twice in one transaction it
is emptied in between. Each row must count once, whatever came before on the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, text

from services.aggregator.upserts import upsert
from shared.kpis import COUNTER_KEYS
from shared.models import kpi_day

DAY = datetime(2026, 12, 7, tzinfo=UTC).date()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    # One pooled connection: every transaction below runs on the same session.
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _row(agent: str, dials: int) -> dict[str, object]:
    return {
        "day": DAY,
        "week": DAY,
        "month": DAY.replace(day=1),
        "agent_id": agent,
        "team_id": "t1",
        "campaign_id": "c1",
        **dict.fromkeys(COUNTER_KEYS, 0),
        "dials": dials,
    }


def _dials(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT agent_id, dials FROM kpi_day ORDER BY agent_id"))
        return {agent: dials for agent, dials in rows}


def _staged(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM staging_kpi_day")).scalar_one())


def test_each_staged_row_counts_once_across_transactions_and_rollbacks(engine: Engine) -> None:
    with engine.begin() as connection:
        upsert(connection, kpi_day, [_row("a1", 2), _row("a2", 5)], add=True)
        # The same table again in the same transaction: only the new rows are added.
        upsert(connection, kpi_day, [_row("a1", 3)], add=True)
    assert _dials(engine) == {"a1": 5, "a2": 5}
    assert _staged(engine) == 0

    # The next transaction on the session stages into the same, emptied table.
    with engine.begin() as connection:
        upsert(connection, kpi_day, [_row("a2", 1)], add=True)
    assert _dials(engine) == {"a1": 5, "a2": 6}

    # A rolled-back transaction leaves neither numbers nor staged rows behind.
    with pytest.raises(RuntimeError), engine.begin() as connection:
        upsert(connection, kpi_day, [_row("a1", 100)], add=True)
        raise RuntimeError("the batch failed")
    assert _dials(engine) == {"a1": 5, "a2": 6}
    with engine.begin() as connection:
        upsert(connection, kpi_day, [_row("a1", 1), _row("a2", -6)], add=True)
    # a2's counters went back to zero: its row is gone.
    assert _dials(engine) == {"a1": 6}


def test_a_staging_table_created_in_a_rolled_back_transaction_is_created_again(
    engine: Engine,
) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        upsert(connection, kpi_day, [_row("a1", 1)], add=True)
        raise RuntimeError("the batch failed")
    with engine.begin() as connection:
        upsert(connection, kpi_day, [_row("a1", 4)], add=True)
    assert _dials(engine) == {"a1": 4}


def test_rows_staged_before_a_savepoint_rolled_back_to_are_not_counted_again(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        upsert(connection, kpi_day, [_row("a1", 2)], add=True)
        savepoint = connection.begin_nested()
        upsert(connection, kpi_day, [_row("a1", 3)], add=True)
        savepoint.rollback()
        # The staging table holds a1's first rows again: staged anew, they are emptied first.
        upsert(connection, kpi_day, [_row("a1", 4)], add=True)
    assert _dials(engine) == {"a1": 6}
