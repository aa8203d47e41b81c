"""Applying one batch of records to the KPI tables: the whole batch in one transaction.

The database is the source of truth for what was applied: each batch's offsets are stored in
the same transaction as its numbers, and a batch re-delivered after a crash skips what the
database already holds. A record that cannot be applied does not hold its partition back: it
goes to the dead-letter topic with the reason (``dead_letters.py``), before the commit that
makes its offset final. Whether a failure is the records' or the system's is for the policy
(``policy.py``) to say; the applier only sets records aside once it has.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine

from services.aggregator import metrics, repository
from services.aggregator.batch import BatchBuilder, BatchDelta
from services.aggregator.dead_letters import DeadLetter, DeadLetterSink
from services.aggregator.facts import State, entity_key
from services.aggregator.failpoints import Failpoints
from services.aggregator.limits import counter_out_of_range, does_not_fit
from services.aggregator.settings import AggregatorSettings
from shared.db import transaction
from shared.dispositions import cached_dispositions
from shared.events import EventType

log = logging.getLogger(__name__)

UNDECODABLE = "undecodable"


@dataclass(frozen=True, slots=True)
class Record:
    """The part of a Kafka record the aggregator uses."""

    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class BatchResult:
    applied: int
    skipped: int
    # Records set aside in the dead-letter topic.
    rejected: int
    next_offsets: dict[int, int]


Pending = list[tuple[Record, dict[str, Any]]]


class BatchApplier:
    """Applies records to the database: the whole batch or nothing.

    Records that cannot be applied are set aside in ``dead_letters`` before the commit that
    makes their offsets final, so that the rest of the batch, and the partition, move on.
    """

    def __init__(
        self, engine: Engine, settings: AggregatorSettings, dead_letters: DeadLetterSink
    ) -> None:
        self.engine = engine
        self.topic = settings.events_topic
        self.builder = BatchBuilder(
            settings.zone,
            settings.effective_call_seconds,
            settings.week_start,
            cached_dispositions(settings.dispositions_file),
        )
        self.dead_letters = dead_letters
        self.after_commit: list[Callable[[BatchResult], None]] = []
        self.failpoints = Failpoints()
        self._transactions = 0

    def apply(
        self, records: list[Record], *, refuse: str | None = None, set_aside: bool = True
    ) -> BatchResult:
        """Apply ``records`` in one transaction.

        Events the merge raises on (or that lack their entity) are set aside; without
        ``set_aside`` the error is raised instead, for the policy to say whether the events or
        the system are at fault. With ``refuse``, every record not applied yet is set aside
        with that reason instead: the member found that the database refuses it.
        """
        letters: list[DeadLetter] = []
        pending: Pending = []
        # Outside the transaction: work that needs no lock holds none back.
        with metrics.stage("decode"):
            decoded = [(record, None, refuse) if refuse else _decode(record) for record in records]
        transaction_started = time.perf_counter()
        with transaction(self.engine) as connection:
            with metrics.stage("lock"):
                claimed = repository.claim_offsets(
                    connection, self.topic, (r.partition for r in records)
                )
            next_offsets: dict[int, int] = {}
            skipped = 0
            for record, event, reason in decoded:
                if record.offset < claimed[record.partition]:
                    skipped += 1
                    continue
                next_offsets[record.partition] = max(
                    next_offsets.get(record.partition, 0), record.offset + 1
                )
                if event is None:
                    if reason.startswith(UNDECODABLE):
                        metrics.REJECTED.inc()
                    letters.append(_letter(record, reason))
                else:
                    pending.append((record, event))
            if next_offsets:
                keys, pending = _entity_keys(pending, letters, set_aside=set_aside)
                with metrics.stage("load_state"):
                    # Waits here while another member holds one of these entities.
                    stored = repository.lock_and_load_states(connection, keys)
                with metrics.stage("merge"):
                    delta, pending = self._build(pending, stored, letters, set_aside=set_aside)
                with metrics.stage("write"):
                    # Stored before the commit that makes their offsets final.
                    self.dead_letters.send(letters)
                    repository.write_delta(connection, delta, self.builder)
                    repository.drop_placeholders(
                        connection, [k for k in keys if k not in delta.states]
                    )
                self._transactions += 1
                self.failpoints.crash_at("mid_batch", self._transactions)
                repository.save_offsets(connection, self.topic, next_offsets)
                if pending:
                    repository.announce_commit(connection, self.topic, len(pending))
            commit_started = time.perf_counter()
        metrics.STAGE_SECONDS.labels("commit").inc(time.perf_counter() - commit_started)
        result = BatchResult(len(pending), skipped, len(letters), next_offsets)
        metrics.observe_batch(
            result.applied, result.skipped, time.perf_counter() - transaction_started
        )
        for hook in self.after_commit:
            hook(result)
        return result

    def _build(
        self,
        pending: Pending,
        stored: dict[str, State],
        letters: list[DeadLetter],
        *,
        set_aside: bool,
    ) -> tuple[BatchDelta, Pending]:
        """The batch's delta, without the events the merge raises on (added to ``letters``)."""
        while True:
            try:
                return self._merge([event for _, event in pending], stored), pending
            except Exception as exc:
                if not set_aside:
                    raise
                poison = self._isolate(pending, stored, exc)
                if not poison:
                    raise  # every part merges alone: not one event's fault
                letters.extend(poison)
                bad = {(p.partition, p.offset) for p in poison}
                pending = [(r, e) for r, e in pending if (r.partition, r.offset) not in bad]

    def _isolate(
        self, pending: Pending, stored: dict[str, State], exc: Exception
    ) -> list[DeadLetter]:
        """Bisect ``pending`` (which raised ``exc``) down to the events that raise alone."""
        if len(pending) == 1:
            return [_letter(pending[0][0], reason_of("the merge raised", exc))]
        middle = len(pending) // 2
        found: list[DeadLetter] = []
        for part in (pending[:middle], pending[middle:]):
            try:
                self._merge([event for _, event in part], stored)
            except Exception as part_exc:
                found.extend(self._isolate(part, stored, part_exc))
        return found

    def _merge(self, events: list[dict[str, Any]], stored: dict[str, State]) -> BatchDelta:
        self.failpoints.raise_on_events(str(event.get("event_id", "")) for event in events)
        delta = self.builder.build(events, stored)
        beyond = counter_out_of_range(delta)
        if beyond is not None:
            raise OverflowError(beyond)
        return delta

    def probe(self) -> None:
        """Apply a known-good call as a batch would, read it back, and roll it all back.

        Raises what the merge or the database raise on it: then no record could be applied,
        and the failure is not the records' doing. Nothing of it stays in the database.
        """
        events = _probe_events(datetime.now(UTC))
        with self.engine.connect() as connection:
            attempt = connection.begin()
            try:
                keys = sorted({key for event in events if (key := entity_key(event))})
                delta = self._merge(events, repository.lock_and_load_states(connection, keys))
                repository.write_delta(connection, delta, self.builder)
                back = repository.load_states(connection, keys)
                if _canonical(back) != _canonical(delta.states):
                    raise RuntimeError("the probe's call did not read back as written")
            finally:
                attempt.rollback()


def _probe_events(now: datetime) -> list[dict[str, Any]]:
    """A connected call of a probe agent: every field as ingest accepts it."""
    call_id = f"callboard-probe-{uuid.uuid4().hex}"
    common = {
        "agent_id": "callboard-probe",
        "team_id": "callboard-probe",
        "campaign_id": "callboard-probe",
        "call_id": call_id,
        "lead_id": "callboard-probe",
        "direction": "outbound",
    }
    return [
        {
            **common,
            "event_id": f"{call_id}-started",
            "type": EventType.call_started,
            "occurred_at": now.isoformat(),
        },
        {
            **common,
            "event_id": f"{call_id}-completed",
            "type": EventType.call_completed,
            "occurred_at": now.isoformat(),
            "answered": True,
            "talk_seconds": 75,
            "disposition": "callback",
        },
    ]


def _canonical(states: dict[str, State]) -> bytes:
    return orjson.dumps(states, option=orjson.OPT_SORT_KEYS)


def _entity_keys(
    pending: Pending, letters: list[DeadLetter], *, set_aside: bool
) -> tuple[list[str], Pending]:
    """The entities the events touch; an event without one it should have is set aside."""
    keys: set[str] = set()
    kept: Pending = []
    for record, event in pending:
        try:
            key = entity_key(event)
        except Exception as exc:
            if not set_aside:
                raise
            letters.append(_letter(record, reason_of("no entity", exc)))
            continue
        if key is not None:
            keys.add(key)
        kept.append((record, event))
    return sorted(keys), kept


def reason_of(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"


def _letter(record: Record, reason: str) -> DeadLetter:
    return DeadLetter(
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.headers,
        record.timestamp_ms,
        reason,
    )


def _decode(record: Record) -> tuple[Record, dict[str, Any] | None, str]:
    """The record's event, or ``None`` and why it is not one the tables can take."""
    try:
        event = orjson.loads(record.value or b"")
        if not isinstance(event, dict) or "type" not in event or "event_id" not in event:
            raise ValueError("not an event object (an object with type and event_id)")
    except (orjson.JSONDecodeError, ValueError) as exc:
        return record, None, reason_of(UNDECODABLE, exc)
    unfit = does_not_fit(event, record.value)
    if unfit is not None:
        return record, None, f"does not fit the tables: {unfit}"
    return record, event, ""
