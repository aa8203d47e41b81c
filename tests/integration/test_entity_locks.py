"""Members lock exactly the entities their batches touch, by the entities' own rows.

Two transactions on different entities go side by side; on the same entity the second
waits for the first. An entity locked but not written leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from services.aggregator import repository


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _store(engine: Engine, key: str, state: dict[str, object]) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO entity_state (key, state) VALUES (:k, :s)"),
            {"k": key, "s": orjson.dumps(state).decode()},
        )


def _keys(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT key FROM entity_state ORDER BY key")).scalars())


def test_different_entities_do_not_wait_and_the_same_entity_does(engine: Engine) -> None:
    _store(engine, "call:stored", {"r": {}, "start": "2026-01-05T01:00:00.000000+00:00"})
    first = engine.connect()
    second = engine.connect()
    try:
        first.begin()
        held = repository.lock_and_load_states(first, ["call:stored", "call:new-1"])
        # The stored state comes back; an entity not stored yet has none.
        assert held == {"call:stored": {"r": {}, "start": "2026-01-05T01:00:00.000000+00:00"}}

        second.begin()
        second.execute(text("SET LOCAL lock_timeout = '1s'"))
        assert repository.lock_and_load_states(second, ["call:new-2", "call:other"]) == {}
        second.rollback()

        for taken in ("call:stored", "call:new-1"):
            second.begin()
            second.execute(text("SET LOCAL lock_timeout = '1s'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                repository.lock_and_load_states(second, [taken])
            second.rollback()

        # Neither entity's state was written: the placeholder goes, the stored row stays.
        repository.drop_placeholders(first, ["call:stored", "call:new-1"])
        first.commit()
    finally:
        first.close()
        second.close()
    assert _keys(engine) == ["call:stored"]
    with engine.connect() as connection:
        assert repository.load_states(connection, ["call:stored", "call:new-1"]) == {
            "call:stored": {"r": {}, "start": "2026-01-05T01:00:00.000000+00:00"}
        }
