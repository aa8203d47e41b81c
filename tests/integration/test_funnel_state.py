"""The aggregator's funnel state depends only on the set of stage changes: not on their
order, their batching or repeats — on PostgreSQL (COPY path) and on SQLite."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, select

from services.aggregator import repository
from services.aggregator.batch import BatchBuilder
from services.aggregator.decoded import decode
from shared.db import upgrade_database
from shared.models import lead_stage, stage_change

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
STAGES = ("potential", "contacted", "acknowledged", "intent", "ready", "lost")


def _events() -> list[dict[str, Any]]:
    rng = random.Random(3)
    events = []
    for n in range(120):
        events.append(
            {
                "event_id": f"s{n}",
                "type": "lead.stage_changed",
                # Some at the same instant: the event id decides.
                "occurred_at": (T0 + timedelta(minutes=rng.randrange(40))).isoformat(),
                "agent_id": f"a{n % 3}",
                "lead_id": f"L{rng.randrange(15)}",
                "stage": rng.choice(STAGES),
            }
        )
    return events


def _apply(engine: Engine, batches: list[list[dict[str, Any]]]) -> None:
    builder = BatchBuilder(ZoneInfo("Asia/Shanghai"), 60)
    for batch in batches:
        with engine.begin() as connection:
            events = [decode(e) for e in batch]
            keys = sorted({e.key for e in events if e.key is not None})
            delta = builder.build(events, repository.load_states(connection, keys))
            repository.write_delta(connection, delta, builder)


def _state(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as connection:
        stages = connection.execute(
            select(lead_stage.c.lead_id, lead_stage.c.stage, lead_stage.c.event_id).order_by(
                lead_stage.c.lead_id
            )
        ).all()
        changes = connection.execute(
            select(stage_change.c.event_id, stage_change.c.stage).order_by(stage_change.c.event_id)
        ).all()
    return tuple(map(tuple, stages)), tuple(map(tuple, changes))


@pytest.fixture(params=["postgresql", "sqlite"])
def engines(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Engine]]:
    """Two empty databases of one dialect (on PostgreSQL the same one twice)."""
    urls = []
    if request.param == "sqlite":
        for n in range(2):
            url = f"sqlite:///{tmp_path_factory.mktemp('funnel') / f'{n}.db'}"
            upgrade_database(url)
            urls.append(url)
    else:
        # One database, emptied by the test between the two runs.
        urls += [request.getfixturevalue("database_url")] * 2
    engines = [create_engine(u) for u in urls]
    yield engines
    for engine in engines:
        engine.dispose()


def test_lead_stage_is_the_latest_change_whatever_the_order(engines: list[Engine]) -> None:
    events = _events()
    expected: dict[str, tuple[str, str, str]] = {}
    for event in events:
        key = (event["occurred_at"], event["event_id"])
        known = expected.get(event["lead_id"])
        if known is None or key > (known[0], known[1]):
            expected[event["lead_id"]] = (event["occurred_at"], event["event_id"], event["stage"])

    _apply(engines[0], [events[:50], events[50:]])
    first = _state(engines[0])
    assert first[0] == tuple(
        (lead, stage, event_id) for lead, (_, event_id, stage) in sorted(expected.items())
    )
    assert len(first[1]) == len(events)

    shuffled = events[:]
    random.Random(9).shuffle(shuffled)
    repeated = shuffled + shuffled[:30]  # redelivered events change nothing
    if engines[1].url == engines[0].url:
        with engines[1].begin() as connection:
            for table in ("lead_stage", "stage_change", "entity_state"):
                connection.exec_driver_sql(f"DELETE FROM {table}")
    _apply(engines[1], [repeated[i : i + 7] for i in range(0, len(repeated), 7)])
    assert _state(engines[1]) == first
