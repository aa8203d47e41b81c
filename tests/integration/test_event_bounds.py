"""Whatever the event validator accepts, the aggregator can apply and store.

Hypothesis draws events of every type with every field at its edges: times around the ends
of the accepted range in every UTC offset, amounts, margins and durations around their
limits, ids of the longest lengths with unicode from every corner (non-BMP characters,
combining marks, invisible and control characters, surrogates, look-alikes). Each event the
validator accepts is written as ingest writes it, applied by the aggregator's own
``BatchApplier`` to a real PostgreSQL database (a sample also to SQLite) in several
deployment zones, and the read API's period arithmetic is run on its time in those zones.
Nothing may raise and nothing may be set aside.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from services.aggregator.applier import BatchApplier, Record
from services.aggregator.settings import AggregatorSettings
from services.api.metrics.periods import Period, resolve_range
from shared.db import upgrade_database
from shared.events import EARLIEST, LATEST, MONEY_LIMIT, BaseEvent, validate_event
from shared.timeutil import add_months, local_midnight, quarter_start, week_start

# Zones at the edges of the offsets (+14, -12), with odd minutes, and with summer time.
ZONES = (
    "Asia/Shanghai",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Europe/London",
)
EVENT_TYPES = (
    "call.started",
    "call.answered",
    "call.ended",
    "call.dispositioned",
    "call.completed",
    "quote.given",
    "sale.closed",
    "sale.cancelled",
    "payment.received",
    "lead.stage_changed",
    "survey.completed",
    "agent.state_changed",
)
MAX_OFFSET_MINUTES = 23 * 60 + 59


class NothingSetAside:
    """The dead-letter sink: an accepted event set aside is exactly what must not happen."""

    def send(self, letters: Any) -> None:
        assert not letters, [letter.reason for letter in letters]


# Each field has its usual values, edges included (accepted or refused by a hair), and odd
# ones (refused, or accepted only by a mistake this test is here to catch). An event gets odd
# values in at most one field, so that most events are accepted and reach the database.
Field = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]

# Times ---------------------------------------------------------------------------------


def _offset_text(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


offsets = st.one_of(
    st.sampled_from([-MAX_OFFSET_MINUTES, -14 * 60, -12 * 60, -150, 0, 345, 8 * 60, 14 * 60]),
    st.sampled_from([MAX_OFFSET_MINUTES]),
    st.integers(-MAX_OFFSET_MINUTES, MAX_OFFSET_MINUTES),
)
# Around the ends of the accepted range (a day either side), and around the ends of Python's.
near = st.one_of(
    st.integers(-86_400_000_000, 86_400_000_000),
    st.sampled_from([-1, 0, 1, -60_000_000, 60_000_000]),
)
YEAR_ENDS = (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))


def _times(anchors: st.SearchStrategy[datetime]) -> st.SearchStrategy[str]:
    @st.composite
    def draw_time(draw: st.DrawFn) -> str:
        offset = draw(offsets)
        try:
            local = draw(anchors) + timedelta(microseconds=draw(near), minutes=offset)
        except OverflowError:
            local = draw(st.sampled_from(YEAR_ENDS))
        suffix = "Z" if offset == 0 and draw(st.booleans()) else _offset_text(offset)
        return local.replace(tzinfo=None).isoformat() + suffix

    return draw_time()


TIMES: Field = (
    _times(st.sampled_from([EARLIEST, LATEST, datetime(2026, 12, 31, 16, tzinfo=UTC)])),
    st.one_of(
        _times(st.sampled_from(YEAR_ENDS)),
        st.datetimes().map(datetime.isoformat),
        st.sampled_from(["2026-11-02 10:00:00+08:00", "1700000000", "2026-13-01T00:00:00Z"]),
        st.integers(),
    ),
)

# Numbers -------------------------------------------------------------------------------


def _numbers(limit: Decimal, places: int, *, signed: bool = False) -> Field:
    step = Decimal(1).scaleb(-places)
    edges = [Decimal(0), step, limit - step, limit, -step, -limit + step, Decimal("1E+3")]
    inside = st.decimals(
        min_value=-limit + step if signed else 0,
        max_value=limit - step,
        places=places,
        allow_nan=False,
        allow_infinity=False,
    )
    usual = st.one_of(st.sampled_from(edges), inside, st.integers(0, 10**6))
    odd = st.one_of(
        st.sampled_from(
            ["١٢٣", "１２３", "1_000", " 12", "NaN", "Infinity", "1e999999", "-0", "0.00001"]
        ),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
    )
    return st.one_of(usual, usual.map(str)), odd


MONEY = _numbers(MONEY_LIMIT, 4)
MARGINS = _numbers(MONEY_LIMIT, 4, signed=True)
DURATIONS = _numbers(Decimal(10**9), 3)

# Text ----------------------------------------------------------------------------------

CORNERS = (
    "a",
    "Z",
    "0",
    "7",
    "-",
    "_",
    ".",
    ":",
    " ",
    ",",
    "@",
    "+",
    "座",
    "二",
    "é",
    "e\u0301",
    "😀",
    "\U0010fffd",
    "\ufffd",
    "\u00a0",
    "\u200b",
    "\u202e",
    "\u2011",
    "\ufeff",
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\ud800",
    "＠",
    "１",
    "ﬁ",
)
plain_text = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "M", "S"]), min_size=1, max_size=64
).filter(lambda value: unicodedata.normalize("NFKC", value) == value)


def ids(pool: str) -> Field:
    """Ids that often repeat (so events merge into one entity), at the longest lengths."""
    usual = st.one_of(
        st.sampled_from([f"{pool}-1", f"{pool}-2", "x" * 64, "😀" * 64, "座" * 64]),
        plain_text,
    )
    odd = st.one_of(
        st.lists(st.sampled_from(CORNERS), max_size=12).map("".join),
        st.sampled_from(["x" * 65, "x" * 128, "座" * 128, "x" * 129, "e\u0301" * 64]),
        st.text(max_size=140),
    )
    return usual, odd


def choices(values: list[Any], odd: list[Any]) -> Field:
    return st.sampled_from(values), st.sampled_from(odd)


def optional(field: Field) -> Field:
    return st.one_of(st.none(), field[0]), field[1]


BOOLEANS = choices([True, False], ["true", 1, None])

# Events --------------------------------------------------------------------------------

COMMON: dict[str, Field] = {
    "event_id": (st.one_of(st.uuids().map(str), ids("e")[0]), ids("e")[1]),
    "occurred_at": TIMES,
    "source": optional(ids("dialer")),
    "team_id": optional(ids("t")),
    "campaign_id": optional(ids("camp")),
    "lead_id": optional(ids("L")),
}
CALLS: dict[str, Field] = {"agent_id": optional(ids("a")), "call_id": ids("c")}
AGENTS: dict[str, Field] = {"agent_id": ids("a")}
BY_TYPE: dict[str, dict[str, Field]] = {
    "call.started": {**CALLS, "direction": choices(["outbound", "inbound"], ["sideways"])},
    "call.answered": {
        **CALLS,
        "contact_reached": BOOLEANS,
        "answered_by": choices(["human", "machine"], ["fax"]),
    },
    "call.ended": {
        **CALLS,
        "talk_seconds": DURATIONS,
        "wrap_seconds": optional(DURATIONS),
        "resolved": optional(BOOLEANS),
    },
    "call.dispositioned": {**CALLS, "disposition": ids("CALLBK")},
    "call.completed": {
        **CALLS,
        "answered": BOOLEANS,
        "direction": choices(["outbound", "inbound"], ["sideways"]),
        "talk_seconds": DURATIONS,
        "wrap_seconds": optional(DURATIONS),
        "disposition": optional(ids("SALE")),
    },
    "quote.given": {**AGENTS, "lead_id": ids("L"), "amount": optional(MONEY)},
    "sale.closed": {
        **AGENTS,
        "lead_id": ids("L"),
        "order_id": ids("o"),
        "amount": MONEY,
        "margin": optional(MARGINS),
        "customer_type": choices(["new", "existing"], ["vip"]),
    },
    "sale.cancelled": {**AGENTS, "order_id": ids("o")},
    "payment.received": {**AGENTS, "order_id": ids("o"), "amount": MONEY},
    "lead.stage_changed": {
        **AGENTS,
        "lead_id": ids("L"),
        "stage": choices(["potential", "contacted", "intent", "ready", "lost"], ["won"]),
    },
    "survey.completed": {
        **AGENTS,
        "call_id": ids("c"),
        "score": (st.integers(1, 5), st.one_of(st.integers(), st.just(True), st.just("5"))),
    },
    "agent.state_changed": {
        **AGENTS,
        "state": choices(["available", "on_call", "wrap_up", "paused", "logged_out"], ["gone"]),
    },
}


@st.composite
def raw_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(EVENT_TYPES))
    fields = {**COMMON, **BY_TYPE[kind]}
    odd = draw(st.sampled_from([None, None, *fields]))
    event: dict[str, Any] = {"type": kind}
    for name, (usual, odd_values) in fields.items():
        event[name] = draw(odd_values if name == odd else usual)
    return {name: value for name, value in event.items() if value is not None}


batches = st.lists(raw_events(), min_size=1, max_size=16)


# The apply path ------------------------------------------------------------------------


class Aggregator:
    """The aggregator's batch apply path on one database, with offsets that keep growing."""

    def __init__(self, url: str, zone: str) -> None:
        self.engine: Engine = create_engine(url)
        self.settings = AggregatorSettings(
            database_url=url, events_topic=f"bounds-{uuid.uuid4().hex[:8]}", timezone=zone
        )
        self.applier = BatchApplier(self.engine, self.settings, NothingSetAside())
        self.offsets = count()

    def apply(self, events: list[BaseEvent]) -> int:
        # As ingest writes them to Kafka.
        records = [
            Record(0, next(self.offsets), e.model_dump_json(exclude_none=True).encode(), key=b"k")
            for e in events
        ]
        result = self.applier.apply(records)
        assert result.rejected == 0
        return result.applied

    def applied_offset(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT next_offset FROM consumer_offset WHERE topic = :t"),
                    {"t": self.settings.events_topic},
                ).scalar_one()
            )


def accepted(raw: list[dict[str, Any]]) -> list[BaseEvent]:
    outcomes = [validate_event(event) for event in raw]
    kept = [o for o in outcomes if isinstance(o, BaseEvent)]
    note(f"{len(kept)} of {len(raw)} accepted: {[e.model_dump_json() for e in kept]}")
    return kept


def check_period_arithmetic(event: BaseEvent) -> None:
    """The read API's calendar steps around the event's time, in every zone and week start."""
    for name in ZONES:
        zone = ZoneInfo(name)
        local_day: date = event.occurred_at.astimezone(zone).date()
        for first_weekday in (0, 6):
            for period in Period:
                current = resolve_range(
                    period, None, None, zone, now=event.occurred_at, first_weekday=first_weekday
                )
                assert current.previous().start < current.start < current.end
            week = week_start(local_day, first_weekday)
            assert local_midnight(week - timedelta(days=7), zone) < local_midnight(
                week + timedelta(days=7), zone
            )
        quarter = quarter_start(local_day)
        assert add_months(quarter, -12) < add_months(quarter, 3)
        assert local_midnight(local_day - timedelta(days=366), zone) < local_midnight(
            local_day + timedelta(days=366), zone
        )


# Derandomized and without the example database, so that every run (a developer's, CI's)
# draws the same examples and the count of accepted events below holds for all of them.
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def postgres_aggregators(migrated_template: str) -> Iterator[dict[str, Aggregator]]:
    from tests.conftest import cloned_database

    aggregators: dict[str, Aggregator] = {}
    with cloned_database(migrated_template) as url:
        for zone in ZONES:
            aggregators[zone] = Aggregator(url, zone)
        yield aggregators
        for aggregator in aggregators.values():
            aggregator.engine.dispose()


@pytest.mark.parametrize("zone", ZONES)
def test_what_the_validator_accepts_postgresql_stores(
    postgres_aggregators: dict[str, Aggregator], zone: str
) -> None:
    aggregator = postgres_aggregators[zone]
    total = 0

    @PROPERTY
    @given(batches)
    def check(raw: list[dict[str, Any]]) -> None:
        nonlocal total
        events = accepted(raw)
        for event in events:
            check_period_arithmetic(event)
        if events:
            assert aggregator.apply(events) == len(events)
            total += len(events)

    check()
    # The property is only worth its name if many generated events got through.
    assert total >= 100, total
    assert aggregator.applied_offset() == total


def test_what_the_validator_accepts_sqlite_stores(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bounds.db'}"
    upgrade_database(url)
    aggregator = Aggregator(url, "Pacific/Kiritimati")
    total = 0

    @settings(PROPERTY, max_examples=100)
    @given(batches)
    def check(raw: list[dict[str, Any]]) -> None:
        nonlocal total
        events = accepted(raw)
        if events:
            assert aggregator.apply(events) == len(events)
            total += len(events)

    try:
        check()
        assert total >= 50, total
        assert aggregator.applied_offset() == total
    finally:
        aggregator.engine.dispose()


@pytest.mark.parametrize(
    ("occurred_at", "accepted_"),
    [
        ("0001-01-01T00:00:00+14:00", False),  # the UTC instant is before year 1
        ("9999-12-31T23:59:59-14:00", False),  # ... after year 9999
        ("1969-12-31T23:59:59Z", False),
        ("1970-01-01T07:59:59+08:00", False),
        ("1970-01-01T00:00:00Z", True),
        ("1970-01-01T08:00:00+08:00", True),
        ("2199-12-31T23:59:59.999999Z", True),
        ("2200-01-01T13:59:59+14:00", True),
        ("2200-01-01T00:00:00Z", False),
    ],
)
def test_the_accepted_times_are_a_fixed_range_of_instants(
    occurred_at: str, accepted_: bool
) -> None:
    outcome = validate_event(
        {"event_id": "e", "type": "call.started", "occurred_at": occurred_at, "call_id": "c"}
    )
    if accepted_:
        assert isinstance(outcome, BaseEvent), outcome
    else:
        assert isinstance(outcome, list) and [e.field for e in outcome] == ["occurred_at"]
