"""Helpers of the fault suite: a dialer that retries, and the end-to-end exactness check.

The truth of a scenario is the set of events the ingest service acknowledged (202). The
check compares the read API with the independent reference over exactly those events, and
the event ids the aggregator applied (read back from the topic, below the offsets the
database stores, without the dead letters) with the acknowledged ids.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from tests.fault_report import FaultReport, FaultRow
from tests.pipeline import TIMEZONE, Pipeline
from tests.reference import reference_cells, served_and_true, value_pairs

ZONE = ZoneInfo(TIMEZONE)
View = tuple[tuple[str, ...], str]
VIEWS: tuple[View, ...] = (((), "none"), (("agent",), "day"), (("team", "campaign"), "hour"))
# The reference knows no roster: a call whose events name no team counts under no team there,
# and under the agent's current team in the API. Floors with such calls compare without teams.
VIEWS_WITHOUT_TEAMS: tuple[View, ...] = (((), "none"), (("agent",), "day"), (("agent",), "hour"))


@dataclass(frozen=True)
class Attempt:
    started: float
    ended: float
    status: int  # 0: no HTTP answer


class Dialer(threading.Thread):
    """Posts events in small batches, retrying 503s and lost answers with the same ids.

    Paced so that posting lasts about ``seconds``, until :meth:`hurry` says the faults are
    over and the rest may go at once; ``acknowledged`` holds every event of a batch that got
    a 202.
    """

    def __init__(
        self, base_url: str, events: list[dict[str, Any]], *, batch: int = 50, seconds: float = 20
    ) -> None:
        super().__init__(name="dialer", daemon=True)
        self.base_url = base_url
        self.batches = [events[i : i + batch] for i in range(0, len(events), batch)]
        self.pause = seconds / max(len(self.batches), 1)
        self.acknowledged: dict[str, dict[str, Any]] = {}
        self.attempts: list[Attempt] = []
        self.failures: list[str] = []
        self._hurried = threading.Event()

    def hurry(self) -> None:
        """Post the batches left without pauses."""
        self._hurried.set()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            for batch in self.batches:
                next_at = time.monotonic() + self.pause
                self._post_until_acknowledged(client, batch)
                self._hurried.wait(max(0.0, next_at - time.monotonic()))

    def _post_until_acknowledged(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = client.post("/v1/events", json=batch)
            except httpx.TransportError:
                self.attempts.append(Attempt(started, time.monotonic(), 0))
                time.sleep(0.2)
                continue
            self.attempts.append(Attempt(started, time.monotonic(), response.status_code))
            if response.status_code == 202:
                body = response.json()
                if body["rejected"]:
                    self.failures.append(f"rejected: {body['rejected'][:3]}")
                for event in batch:
                    self.acknowledged[event["event_id"]] = event
                return
            if response.status_code == 503:
                time.sleep(min(float(response.headers.get("retry-after", "1")), 0.5))
                continue
            self.failures.append(f"{response.status_code}: {response.text[:300]}")
            return
        self.failures.append("a batch was not acknowledged in 240 s")


def applied_total(pipeline: Pipeline) -> int:
    return sum(pipeline.applied_offsets().values())


def wait_progress(pipeline: Pipeline, since: int, timeout: float = 120) -> float:
    """Seconds until the stored offsets pass ``since``, or the topic is all applied."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if applied_total(pipeline) > since:
                return time.monotonic() - started
        except Exception:
            pass  # the database may be coming back
        time.sleep(0.1)
    target = sum(pipeline.end_offsets().values())
    if applied_total(pipeline) >= target:
        return time.monotonic() - started
    raise AssertionError(
        f"no progress past {since} in {timeout} s\n"
        + "\n".join(pipeline.log(n)[-2000:] for n in pipeline.processes if "aggregator" in n)
    )


@dataclass
class Check:
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    counted: int = 0
    records: int = 0
    # Acknowledged events whose ids were not applied.
    lost: int = 0
    # KPI values above the reference: what an event counted twice leaves behind.
    doubled: int = 0

    @property
    def failures(self) -> int:
        return len(self.mismatches)


def ingest_url(pipeline: Pipeline) -> str:
    return f"http://127.0.0.1:{pipeline.ingest_port}"


def aggregator_logs(pipeline: Pipeline) -> str:
    logs = sorted(pipeline.workdir.glob("aggregator*.log"))
    return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


def finish(dialer: Dialer, timeout: float = 300) -> None:
    """The faults are over: the dialer posts what it has left at once, then stops."""
    dialer.hurry()
    dialer.join(timeout)
    assert not dialer.is_alive(), "the dialer did not finish"
    assert dialer.failures == []


def report_scenario(
    report: FaultReport,
    scenario: str,
    started: float,
    acknowledged: int,
    check: Check,
    *,
    faults: str,
    recovery: str,
    dead_letters: int = 0,
) -> None:
    report.add(
        FaultRow(
            scenario=scenario,
            acknowledged=acknowledged,
            counted=check.counted,
            records=check.records,
            dead_letters=dead_letters,
            faults=faults,
            recovery=recovery,
            checked=check.checked,
            mismatches=check.failures,
            seconds=time.monotonic() - started,
        )
    )


def assert_exact(check: Check, pipeline: Pipeline) -> None:
    assert check.checked > 100
    assert check.mismatches == [], (check.mismatches[:20], aggregator_logs(pipeline))


def topic_event_ids(
    bootstrap_servers: str, topic: str, applied: dict[int, int], dead: set[tuple[int, int]]
) -> tuple[int, set[str]]:
    """Records in the topic, and the event ids of those applied (below the stored offsets)
    that were not set aside as dead letters."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        ids: set[str] = set()
        records = 0
        # However long the topic, reading it back must not stand still for a minute.
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "the topic could not be read back"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                deadline = time.monotonic() + 60
                for record in batch:
                    if record.offset >= ends[tp]:
                        continue
                    records += 1
                    if record.offset >= applied.get(tp.partition, 0):
                        continue
                    if (tp.partition, record.offset) in dead:
                        continue
                    ids.add(orjson.loads(record.value)["event_id"])
        return records, ids
    finally:
        consumer.close()


def check_exactly_once(
    pipeline: Pipeline,
    acknowledged: dict[str, dict[str, Any]],
    dead: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
    views: tuple[View, ...] = VIEWS,
) -> Check:
    """Every KPI against the reference over the acknowledged events; the ids applied
    against the ids acknowledged."""
    check = Check()
    applied = pipeline.applied_offsets()
    check.records, counted = topic_event_ids(
        pipeline.bootstrap_servers, pipeline.topic, applied, set(dead)
    )
    check.counted = len(counted)
    check.lost = len(acknowledged.keys() - counted)
    for what, ids in (
        ("acknowledged, not counted", acknowledged.keys() - counted),
        ("counted, not acknowledged", counted - acknowledged.keys()),
    ):
        check.mismatches.extend(f"{what}: {event_id}" for event_id in sorted(ids))
    compare_kpis(pipeline, list(acknowledged.values()), check, views)
    return check


def compare_kpis(
    pipeline: Pipeline, events: list[dict[str, Any]], check: Check, views: tuple[View, ...] = VIEWS
) -> None:
    cells = reference_cells(events, ZONE)
    times = [datetime.fromisoformat(e["occurred_at"]).astimezone(ZONE) for e in events]
    start = min(times).replace(hour=0, minute=0, second=0, microsecond=0)
    end = max(times).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
    for group, granularity in views:
        view = f"{','.join(group) or 'floor'}/{granularity}"
        expected, got = served_and_true(pipeline, cells, group, granularity, start, end)
        for key in got.keys() - expected.keys():
            check.mismatches.append(f"{view} {key}: a row the reference does not have")
        for key, truth in expected.items():
            row = got.get(key)
            if row is None:
                check.mismatches.append(f"{view} {key}: row missing")
                continue
            for name, actual, wanted in value_pairs(row, truth):
                check.checked += 1
                if actual != wanted:
                    check.mismatches.append(f"{view} {key} {name}: {actual} != {wanted}")
                    check.doubled += _above(actual, wanted)


def _above(actual: Any, wanted: Any) -> bool:
    numbers = (int, float, Decimal)
    if isinstance(actual, numbers) and isinstance(wanted, numbers):
        return Decimal(str(actual)) > Decimal(str(wanted))
    return False


def poison_flood(count: int, at: datetime) -> list[tuple[bytes, bytes]]:
    """``count`` records the aggregator cannot apply, as keyed records for the events topic.

    Most have an ``occurred_at`` whose UTC instant is before year 1 (the merge overflows);
    the rest: a talk time that is no number, no ``call_id``, not JSON, and (one in a hundred
    each) an agent id longer than the tables take, a talk time beyond a counter's range, and
    an agent id marked ``refused-`` (for a database rule that refuses it, unknown to the
    aggregator).
    """
    records: list[tuple[bytes, bytes]] = []
    for n in range(count):
        call: dict[str, Any] = {
            "event_id": f"flood-{n}",
            "type": "call.started",
            "occurred_at": "0001-01-01T00:00:00+14:00",
            "agent_id": f"flood-agent-{n % 11}",
            "team_id": "flood-team",
            "call_id": f"flood-call-{n}",
            "lead_id": f"flood-lead-{n % 97}",
        }
        shape = n % 10
        if shape == 1:
            call.update(
                type="call.completed",
                occurred_at=at.isoformat(),
                answered=True,
                talk_seconds="forty",
            )
        elif shape == 2:
            call.update(occurred_at=at.isoformat())
            del call["call_id"]
        elif shape == 3 and n % 100 == 3:
            call.update(occurred_at=at.isoformat(), agent_id="x" * 100)
        elif shape == 3 and n % 100 == 13:
            call.update(
                type="call.completed", occurred_at=at.isoformat(), answered=True, talk_seconds=1e20
            )
        elif shape == 3 and n % 100 == 23:
            call.update(occurred_at=at.isoformat(), agent_id=f"refused-{n}")
        value = b"\x00 not JSON: flood " + str(n).encode() if shape == 4 else orjson.dumps(call)
        records.append((str(call["agent_id"]).encode(), value))
    return records


class FloorWatch(threading.Thread):
    """Reads the floor's numbers for ``day`` from the API every 0.1 s, keeping when they
    changed: how long the KPIs stood still while events kept coming."""

    def __init__(self, pipeline: Pipeline, day: datetime) -> None:
        super().__init__(name="floor-watch", daemon=True)
        self.base_url = str(pipeline.api.base_url)
        self.params = {
            "metrics": "dials,inbound_calls,connects,talk_seconds",
            "from": day.isoformat(),
            "to": (day + timedelta(days=1)).isoformat(),
        }
        self.changes: list[float] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        last: tuple[int, ...] | None = None
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stop.is_set():
                response = client.get("/v1/metrics", params=self.params)
                if response.status_code != 200:
                    self.failed += 1
                else:
                    rows = response.json()["rows"]
                    now = tuple(
                        int(rows[0][m]) if rows else 0
                        for m in ("dials", "inbound_calls", "connects", "talk_seconds")
                    )
                    if now != last:
                        self.changes.append(time.monotonic())
                        last = now
                self.stop.wait(0.1)

    def longest_standstill(self, start: float, end: float) -> float:
        """The longest time within ``[start, end]`` the numbers did not change."""
        moments = [start, *(t for t in self.changes if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(moments))


def stop_quietly(pipeline: Pipeline, name: str) -> None:
    if name in pipeline.processes:
        pipeline.stop(name)
