"""Dead letters: what the aggregator cannot apply is set aside with the reason, before the
commit that makes its offset final, and the rest of the batch moves on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from services.aggregator.applier import BatchApplier, Record
from services.aggregator.consumer import AggregatorMember
from services.aggregator.dead_letters import (
    REPLAY_OF,
    DeadLetter,
    DeadLetterUnavailable,
    KafkaDeadLetters,
    read_dead_letters,
    replay,
)
from services.aggregator.policy import Decision, ProcessingPolicy, is_infrastructure
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
    values = {"events_topic": "events-t", **values}
    return AggregatorSettings(database_url=database_url, timezone=TIMEZONE, **values)


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


def _year_zero(n: int) -> bytes:
    """An event ingest once accepted whose UTC instant is before year 1: the merge raises."""
    return orjson.dumps(
        {
            "event_id": f"year-zero-{n}",
            "type": "call.started",
            "occurred_at": "0001-01-01T00:00:00+14:00",
            "agent_id": "agent-p",
            "team_id": "team-p",
            "call_id": f"year-zero-call-{n}",
            "lead_id": "lead-p",
        }
    )


def _poison(n: int, at: datetime) -> bytes:
    """The ``n``th of a flood of records the aggregator cannot apply, in seven shapes."""
    call: dict[str, Any] = {
        "event_id": f"poison-{n}",
        "type": "call.completed",
        "occurred_at": at.isoformat(),
        "agent_id": "agent-p",
        "call_id": f"poison-call-{n}",
        "answered": True,
        "talk_seconds": 30,
    }
    shape = n % 10
    if shape == 0:
        return b"\xff not JSON " + str(n).encode()
    if shape == 1:
        return orjson.dumps({**call, "talk_seconds": "thirty"})  # the merge raises
    if shape == 2:
        return orjson.dumps({key: v for key, v in call.items() if key != "call_id"})
    if shape == 3 and n % 100 == 3:
        return orjson.dumps({**call, "agent_id": "x" * 100})  # longer than the tables take
    if shape == 3 and n % 100 == 13:
        return orjson.dumps({**call, "talk_seconds": 1e20})  # beyond the counters' range
    if shape == 3 and n % 100 == 23:
        return orjson.dumps({**call, "agent_id": f"refused-{n}"})  # see REFUSE_MARKED_AGENTS
    return _year_zero(n)


def test_a_batch_of_nothing_but_poison_is_set_aside_and_the_partitions_move_on(
    database_url: str, engine: Engine
) -> None:
    sink = ListSink()
    applier = BatchApplier(engine, _settings(database_url), sink)
    values = [_year_zero(n) for n in range(2500)] + [b"x", b"y", b"z"]
    result = applier.apply(_records(values))
    assert (result.applied, result.rejected) == (0, len(values))
    assert len(sink.letters) == len(values)
    assert sum(1 for x in sink.letters if "OverflowError" in x.reason) == 2500
    # Every offset final: the next batch starts after them.
    assert _totals(engine) == (0, 0, len(values))


def test_text_the_tables_cannot_hold_is_set_aside_before_the_transaction(
    database_url: str, engine: Engine
) -> None:
    def call(n: int, **values: str) -> dict[str, Any]:
        return {
            "event_id": f"fit-{n}",
            "type": "call.started",
            "occurred_at": START.isoformat(),
            "agent_id": "a-1",
            "team_id": "t-1",
            "call_id": f"fit-call-{n}",
            "lead_id": "l-1",
            **values,
        }

    fits = call(1, agent_id="a" * 64, lead_id="l" * 128)  # as long as the columns take
    unfit = [
        call(2, agent_id="a" * 65),
        call(3, team_id="t" * 65),
        call(4, lead_id="l" * 129),
        call(5, call_id="c" * 200),
        call(6, agent_id="a\x00b"),
        call(7, disposition="d" * 33),
    ]
    sink = ListSink()
    applier = BatchApplier(engine, _settings(database_url), sink)
    result = applier.apply(_records([orjson.dumps(e) for e in [fits, *unfit]]))
    assert (result.applied, result.rejected) == (1, len(unfit))
    reasons = {_event_id(x.value): x.reason for x in sink.letters}
    assert reasons.keys() == {e["event_id"] for e in unfit}
    assert all(r.startswith("does not fit the tables: ") for r in reasons.values()), reasons
    assert _totals(engine) == (*_reference([fits]), 1 + len(unfit))


def _healthy() -> float | None:
    return REGISTRY.get_sample_value("callboard_aggregator_healthy")


def _rows(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


REFUSE_EVERY_DAY_ROW = "ALTER TABLE kpi_day ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
# A rule of the database the aggregator does not know: only the database refuses these.
REFUSE_MARKED_AGENTS = (
    "ALTER TABLE kpi_day ADD CONSTRAINT refuse_marked CHECK (agent_id NOT LIKE 'refused-%')"
)


def test_the_policy_blames_the_records_only_when_a_known_good_record_applies(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(database_url)
    applier = BatchApplier(engine, settings, ListSink())
    policy = ProcessingPolicy(applier.probe, give_up_after_seconds=60, stop=threading.Event())
    merge_error = OverflowError("date value out of range")
    assert policy.decide(merge_error) is Decision.SET_ASIDE
    assert policy.records_at_fault
    assert _healthy() == 1
    # The probe's call was rolled back.
    assert [_rows(engine, t) for t in ("kpi_day", "kpi_minute", "entity_state")] == [0, 0, 0]

    # A table that refuses every row (a migration gone wrong): a refused value is not the
    # records' fault when a known-good call is refused too.
    with engine.begin() as connection:
        connection.execute(text(REFUSE_EVERY_DAY_ROW))
    policy.start_batch()
    refused = IntegrityError("INSERT", {}, Exception("violates check constraint refuse_all"))
    assert policy.decide(refused) is Decision.RETRY
    assert not policy.records_at_fault
    assert _healthy() == 0
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE kpi_day DROP CONSTRAINT refuse_all"))
    assert policy.decide(refused) is Decision.SET_ASIDE
    policy.succeeded()
    assert _healthy() == 1

    # A bug in the merge that hits every event, the probe's too.
    monkeypatch.setenv("CALLBOARD_FAILPOINT", "apply_error:")
    buggy = BatchApplier(engine, settings, ListSink())
    policy = ProcessingPolicy(buggy.probe, give_up_after_seconds=60, stop=threading.Event())
    assert policy.decide(RuntimeError("failpoint apply_error: e-1")) is Decision.RETRY
    assert _healthy() == 0

    # Errors of the infrastructure are retried without a probe, until the time runs out.
    policy = ProcessingPolicy(_no_probe, give_up_after_seconds=0.2, stop=threading.Event())
    down = OperationalError("SELECT 1", {}, Exception("server closed"))
    assert policy.decide(down) is Decision.RETRY
    time.sleep(0.3)
    assert policy.decide(down) is Decision.STOP
    stopping = threading.Event()
    stopping.set()
    assert ProcessingPolicy(_no_probe, give_up_after_seconds=60, stop=stopping).decide(
        merge_error
    ) is (Decision.STOP)


def _no_probe() -> None:
    raise AssertionError("not probed")


def test_errors_of_the_infrastructure_are_retried_not_set_aside() -> None:
    assert is_infrastructure(DeadLetterUnavailable("away"))
    assert is_infrastructure(OperationalError("SELECT 1", {}, Exception("server closed")))
    assert is_infrastructure(psycopg.OperationalError("server closed the connection"))
    assert is_infrastructure(ConnectionResetError())
    assert not is_infrastructure(DataError("COPY", {}, Exception("value too long")))
    assert not is_infrastructure(psycopg.errors.StringDataRightTruncation("value too long"))
    assert not is_infrastructure(KeyError("call_id"))


class RunningMember:
    """An aggregator member polling in a thread of this process, on the real broker."""

    def __init__(self, settings: AggregatorSettings, engine: Engine) -> None:
        self.stop = threading.Event()
        self.member = AggregatorMember(engine, settings, self.stop)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.member.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        self.member.close()


def _produce(servers: str, topic: str, records: list[tuple[bytes, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush(30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
    return len(records)


def _wait_applied(engine: Engine, records: int, member: RunningMember, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _totals(engine)[2] < records:
        assert member.error is None, member.error
        assert time.monotonic() < deadline, f"{_totals(engine)[2]} of {records} applied"
        time.sleep(0.2)


def _member_settings(database_url: str, servers: str, topic: str) -> AggregatorSettings:
    return _settings(
        database_url,
        kafka_bootstrap_servers=servers,
        events_topic=topic,
        group_id=f"g-{topic}",
        batch_max_records=5000,
    )


def test_a_member_counts_on_through_a_flood_of_poison(
    database_url: str, engine: Engine, kafka_bootstrap_servers: str, topic: str
) -> None:
    events = generate_floor(62, start=START, calls_per_agent=25).events
    poison = [_poison(n, START) for n in range(3000)]
    records = [(e["agent_id"].encode(), orjson.dumps(e)) for e in events]
    # Three poison records after each good event, then the rest: whole batches of poison.
    mixed: list[tuple[bytes, bytes]] = []
    for index, record in enumerate(records):
        mixed.append(record)
        mixed.extend((f"p-{n % 7}".encode(), poison[n]) for n in range(3 * index, 3 * index + 3))
    mixed.extend((f"p-{n % 7}".encode(), poison[n]) for n in range(3 * len(records), 3000))
    assert len(mixed) == len(events) + 3000
    with engine.begin() as connection:
        connection.execute(text(REFUSE_MARKED_AGENTS))
    settings = _member_settings(database_url, kafka_bootstrap_servers, topic)
    member = RunningMember(settings, engine)
    try:
        total = _produce(kafka_bootstrap_servers, topic, mixed)
        _wait_applied(engine, total, member, timeout=180)
        assert member.error is None and member.thread.is_alive()
    finally:
        member.close()
    assert _totals(engine) == (*_reference(events), total)
    letters = read_dead_letters(settings)
    assert sorted(x.value or b"" for x in letters) == sorted(poison)
    assert {x.reason.split(":")[0] for x in letters} == {
        "undecodable",
        "no entity",
        "the merge raised",
        "does not fit the tables",
        "not applied",
    }
    assert sum(1 for x in letters if "beyond the counters' range" in x.reason) == 30
    assert sum(1 for x in letters if x.reason.startswith("not applied")) == 30
    assert _healthy() == 1


def test_a_table_refusing_every_row_sets_nothing_aside_and_recovers_exact(
    database_url: str, engine: Engine, kafka_bootstrap_servers: str, topic: str
) -> None:
    events = generate_floor(63, start=START, calls_per_agent=20).events
    with engine.begin() as connection:
        connection.execute(text(REFUSE_EVERY_DAY_ROW))
    settings = _member_settings(database_url, kafka_bootstrap_servers, topic)
    member = RunningMember(settings, engine)
    try:
        total = _produce(
            kafka_bootstrap_servers,
            topic,
            [(e["agent_id"].encode(), orjson.dumps(e)) for e in events],
        )
        deadline = time.monotonic() + 60
        while _healthy() != 0:
            assert time.monotonic() < deadline, "the member never found the failure"
            time.sleep(0.1)
        time.sleep(3)
        assert member.error is None and member.thread.is_alive()
        assert _totals(engine) == (0, 0, 0)
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE kpi_day DROP CONSTRAINT refuse_all"))
        _wait_applied(engine, total, member, timeout=120)
    finally:
        member.close()
    assert _totals(engine) == (*_reference(events), total)
    assert read_dead_letters(settings) == []
    assert _healthy() == 1


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
