"""Dead letters: what the aggregator cannot apply is set aside with the reason, before the
commit that makes its offset final, and the rest of the batch moves on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DataError, OperationalError

from services.aggregator.consumer import BatchApplier, Record, TooManyDeadLetters, _retryable
from services.aggregator.dead_letters import (
    REPLAY_OF,
    DeadLetter,
    DeadLetterUnavailable,
    KafkaDeadLetters,
    read_dead_letters,
    replay,
)
from services.aggregator.settings import AggregatorSettings
from tests.floor import generate_floor
from tests.pipeline import TIMEZONE
from tests.reference import reference_cells

ZONE = ZoneInfo(TIMEZONE)

START = datetime(2026, 11, 12, 9, 0, tzinfo=ZONE)


class ListSink:
    """Keeps the letters; refuses the first ``fail`` sends as an unreachable broker would."""

    def __init__(self, fail: int = 0) -> None:
        self.letters: list[DeadLetter] = []
        self.fail = fail

    def send(self, letters: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise DeadLetterUnavailable("broker away")
        self.letters.extend(letters)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _settings(database_url: str, **values: Any) -> AggregatorSettings:
    return AggregatorSettings(
        database_url=database_url, events_topic="events-t", timezone=TIMEZONE, **values
    )


def _records(values: list[bytes]) -> list[Record]:
    return [Record(i % 2, i // 2, value, key=b"k") for i, value in enumerate(values)]


def _poisoned_floor() -> tuple[list[dict[str, Any]], list[bytes]]:
    events = generate_floor(61, start=START, calls_per_agent=10).events
    at = START.isoformat()
    poison = [
        b"\xff not JSON",
        orjson.dumps({"event_id": "no-call", "type": "call.started", "occurred_at": at}),
        orjson.dumps(
            {"event_id": "bad-time", "type": "call.started", "occurred_at": "x", "call_id": "c"}
        ),
        orjson.dumps({**events[0], "event_id": "bug-1"}),
    ]
    values = [orjson.dumps(e) for e in events]
    for index, value in enumerate(poison):
        values.insert(100 + 37 * index, value)
    return events, values


def _event_id(value: bytes | None) -> str | None:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return event.get("event_id") if isinstance(event, dict) else None


def _totals(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        dials, inbound = connection.execute(
            text("SELECT coalesce(sum(dials), 0), coalesce(sum(inbound_calls), 0) FROM kpi_day")
        ).one()
        applied = connection.execute(
            text("SELECT coalesce(sum(next_offset), 0) FROM consumer_offset")
        ).scalar_one()
    return int(dials), int(inbound), int(applied)


def _reference(events: list[dict[str, Any]]) -> tuple[int, int]:
    cells = reference_cells(events, ZONE).values()
    return (
        sum(c.counts.get("dials", 0) for c in cells),
        sum(c.counts.get("inbound_calls", 0) for c in cells),
    )


def test_poison_in_a_batch_is_set_aside_and_the_rest_applied(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBOARD_FAILPOINT", "apply_error:bug-")
    events, values = _poisoned_floor()
    sink = ListSink()
    applier = BatchApplier(engine, _settings(database_url), sink)
    result = applier.apply(_records(values))
    assert result.rejected == 4
    assert result.applied == len(events)
    reasons = {_event_id(letter.value): letter.reason for letter in sink.letters}
    assert reasons.keys() == {None, "no-call", "bad-time", "bug-1"}
    assert reasons[None].startswith("undecodable")
    assert reasons["no-call"].startswith("no entity: KeyError")
    assert reasons["bad-time"].startswith("the merge raised: ValueError")
    assert "failpoint apply_error" in reasons["bug-1"]
    assert _totals(engine) == (*_reference(events), len(values))

    # Delivered again (a crash before Kafka's commit): skipped, nothing set aside twice.
    again = applier.apply(_records(values))
    assert (again.applied, again.rejected, again.skipped) == (0, 0, len(values))
    assert len(sink.letters) == 4


def test_dead_letters_are_stored_before_the_commit(database_url: str, engine: Engine) -> None:
    events, values = _poisoned_floor()
    sink = ListSink(fail=1)
    applier = BatchApplier(engine, _settings(database_url), sink)
    with pytest.raises(DeadLetterUnavailable):
        applier.apply(_records(values))
    # Nothing of the batch committed: its offsets are not final while its letters are not
    # stored.
    assert _totals(engine) == (0, 0, 0)
    applier.apply(_records(values))
    assert len(sink.letters) == 3  # without the failpoint, bug-1 is an event like any other
    assert _totals(engine) == (*_reference(events), len(values))


def test_a_batch_of_mostly_poison_stops_the_member(database_url: str, engine: Engine) -> None:
    sink = ListSink()
    settings = _settings(database_url, dead_letters_max_per_batch=2)
    applier = BatchApplier(engine, settings, sink)
    with pytest.raises(TooManyDeadLetters):
        applier.apply(_records([b"x", b"y", b"z"]))
    assert sink.letters == []
    assert _totals(engine) == (0, 0, 0)


def test_errors_of_the_infrastructure_are_retried_not_set_aside() -> None:
    assert _retryable(DeadLetterUnavailable("away"))
    assert _retryable(OperationalError("SELECT 1", {}, Exception("server closed")))
    assert _retryable(psycopg.OperationalError("server closed the connection"))
    assert _retryable(ConnectionResetError())
    assert not _retryable(DataError("COPY", {}, Exception("value too long")))
    assert not _retryable(psycopg.errors.StringDataRightTruncation("value too long"))
    assert not _retryable(KeyError("call_id"))


def test_dead_letter_topic_round_trip(kafka_bootstrap_servers: str, topic: str) -> None:
    settings = AggregatorSettings(
        kafka_bootstrap_servers=kafka_bootstrap_servers, events_topic=topic, group_id="g-dlt"
    )
    sink = KafkaDeadLetters(settings)
    event = orjson.dumps({"event_id": "e-1", "type": "call.started"})
    try:
        sink.send(
            [
                DeadLetter(1, 7, b"agent-1", event, (("request_id", b"r-1"),), 0, "why: 1"),
                DeadLetter(2, 9, None, b"junk", (), 0, "why: 2"),
            ]
        )
        sink.send([DeadLetter(1, 7, b"agent-1", event, (), 0, "why: 1")])  # a retried batch
    finally:
        sink.close()
    assert settings.dead_letter_topic == f"{topic}.dead-letters"

    letters = read_dead_letters(settings)
    assert [(x.source_partition, x.source_offset, x.reason) for x in letters] == [
        (1, 7, "why: 1"),
        (2, 9, "why: 2"),
    ]
    assert letters[0].event_id == "e-1"
    assert letters[0].headers == (("request_id", b"r-1"),)
    assert not any(x.replayed for x in letters)

    assert replay(settings, letters) == 2
    assert all(x.replayed for x in read_dead_letters(settings))
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap_servers, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        replayed = [r for _ in range(20) for batch in consumer.poll(500).values() for r in batch]
    finally:
        consumer.close()
    assert sorted(r.value for r in replayed) == sorted([event, b"junk"])
    for record in replayed:
        headers = dict(record.headers)
        assert headers[REPLAY_OF].startswith(f"{topic}.dead-letters/0/".encode())
        assert not any(k.startswith("callboard.dlt.") for k in headers)
