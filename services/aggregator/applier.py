"""Applying one batch of records to the KPI tables: the whole batch in one transaction.

The database is the source of truth for what was applied: each batch's offsets are stored in
the same transaction as its numbers, and a batch re-delivered after a crash skips what the
database already holds. Each record is decoded once, into a typed event
(``decoded.py``). A record that cannot be applied is reported as a :class:`Problem` with its
reason; the policy (``policy.py``) says whether it is set aside, and if so it goes to the
dead-letter topic (``dead_letters.py``) before the commit that makes its offset final, so
that it does not hold its partition back.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine

from services.aggregator import metrics, repository
from services.aggregator.batch import BatchBuilder, BatchDelta
from services.aggregator.dead_letters import DeadLetter, DeadLetterSink
from services.aggregator.decoded import DecodedEvent, decode, decode_with_key
from services.aggregator.facts import State, entity_key
from services.aggregator.failpoints import Failpoints
from services.aggregator.limits import counter_out_of_range, does_not_fit
from services.aggregator.outcomes import (
    UNDECODABLE,
    BatchResult,
    Judge,
    Problem,
    Record,
    reason_of,
)
from services.aggregator.policy import set_aside_every_problem
from services.aggregator.settings import AggregatorSettings
from shared.db import transaction
from shared.dispositions import cached_dispositions
from shared.events import EventType

__all__ = ["BatchApplier", "BatchResult", "Record"]

log = logging.getLogger(__name__)

Pending = list[tuple[Record, DecodedEvent]]


# A record read outside the transaction: its event, or the problem that stops it, and where
# the problem ranks among the batch's (in the order the batch meets them).
Decoded = tuple[Record, DecodedEvent | None, Problem | None, int]
NOT_AN_EVENT, NO_ENTITY, MERGE_RAISES = 1, 2, 3


class BatchApplier:
    """Applies records to the database: the whole batch or nothing.

    Records the policy sets aside go to ``dead_letters`` before the commit that makes their
    offsets final, so that the rest of the batch, and the partition, move on.
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
        self,
        records: list[Record],
        *,
        refuse: str | None = None,
        judge: Judge = set_aside_every_problem,
    ) -> BatchResult:
        """Apply ``records`` in one transaction.

        Each record that cannot be applied is put to ``judge``: set aside, or its error
        raised for the policy to say whether the events or the system are at fault. With
        ``refuse``, every record not applied yet is a problem with that reason instead: the
        member found that the database refuses it.
        """
        letters: list[DeadLetter] = []
        # Outside the transaction: work that needs no lock holds none back.
        with metrics.stage("decode"):
            decoded = [
                (record, None, Problem(record, refuse), NOT_AN_EVENT) if refuse else _decode(record)
                for record in records
            ]
        transaction_started = time.perf_counter()
        with transaction(self.engine) as connection:
            with metrics.stage("lock"):
                claimed = repository.claim_offsets(
                    connection, self.topic, (r.partition for r in records)
                )
            next_offsets: dict[int, int] = {}
            skipped = 0
            pending: Pending = []
            problems: list[tuple[int, Problem]] = []
            for record, event, problem, rank in decoded:
                if record.offset < claimed[record.partition]:
                    skipped += 1
                    continue
                next_offsets[record.partition] = max(
                    next_offsets.get(record.partition, 0), record.offset + 1
                )
                if event is not None:
                    pending.append((record, event))
                elif problem is not None:
                    problems.append((rank, problem))
            for _, problem in sorted(problems, key=lambda ranked: ranked[0]):
                _judged(problem, judge, letters)
            if next_offsets:
                keys = sorted({event.key for _, event in pending if event.key is not None})
                with metrics.stage("load_state"):
                    # Waits here while another member holds one of these entities.
                    stored = repository.lock_and_load_states(connection, keys)
                with metrics.stage("merge"):
                    delta, pending = self._build(pending, stored, letters, judge)
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
        self, pending: Pending, stored: dict[str, State], letters: list[DeadLetter], judge: Judge
    ) -> tuple[BatchDelta, Pending]:
        """The batch's delta, without the events the merge raises on (put to ``judge``)."""
        while True:
            try:
                return self._merge([event for _, event in pending], stored), pending
            except Exception as exc:
                # Asked first about the whole batch, so that no bisection is spent on an
                # error the policy wants back as it is.
                if not judge(Problem(None, reason_of("the merge raised", exc), exc)):
                    raise
                poison = self._isolate(pending, stored, exc)
                if not poison:
                    raise  # every part merges alone: not one event's fault
                if not all([judge(problem) for problem in poison]):
                    raise
                letters.extend(_letter(problem) for problem in poison)
                bad = {problem.record for problem in poison}
                pending = [(r, e) for r, e in pending if r not in bad]

    def _isolate(self, pending: Pending, stored: dict[str, State], exc: Exception) -> list[Problem]:
        """Bisect ``pending`` (which raised ``exc``) down to the events that raise alone."""
        if len(pending) == 1:
            return [Problem(pending[0][0], reason_of("the merge raised", exc), exc)]
        middle = len(pending) // 2
        found: list[Problem] = []
        for part in (pending[:middle], pending[middle:]):
            try:
                self._merge([event for _, event in part], stored)
            except Exception as part_exc:
                found.extend(self._isolate(part, stored, part_exc))
        return found

    def _merge(self, events: list[DecodedEvent], stored: dict[str, State]) -> BatchDelta:
        self.failpoints.raise_on_events(str(event.event_id) for event in events)
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
        events = [decode(event) for event in _probe_events(datetime.now(UTC))]
        with self.engine.connect() as connection:
            attempt = connection.begin()
            try:
                keys = sorted({event.key for event in events if event.key})
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


def _judged(problem: Problem, judge: Judge, letters: list[DeadLetter]) -> None:
    """Set ``problem``'s record aside if the policy says so; raise its error otherwise."""
    if not judge(problem):
        raise problem.error or RuntimeError(problem.reason)
    if problem.reason.startswith(UNDECODABLE):
        metrics.REJECTED.inc()
    letters.append(_letter(problem))


def _letter(problem: Problem) -> DeadLetter:
    record = problem.record
    assert record is not None, "a problem of the whole batch is narrowed to records first"
    return DeadLetter(
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.headers,
        record.timestamp_ms,
        problem.reason,
    )


def _decode(record: Record) -> Decoded:
    """The record's event, or the problem that keeps the tables from taking it."""
    try:
        raw = orjson.loads(record.value or b"")
        if not isinstance(raw, dict) or "type" not in raw or "event_id" not in raw:
            raise ValueError("not an event object (an object with type and event_id)")
    except (orjson.JSONDecodeError, ValueError) as exc:
        return record, None, Problem(record, reason_of(UNDECODABLE, exc)), NOT_AN_EVENT
    key: str | None = None
    no_entity: Exception | None = None
    try:
        key = entity_key(raw)
    except Exception as exc:
        no_entity = exc
    # Text the tables cannot hold is the first reason given, a missing entity the next.
    unfit = does_not_fit(raw, record.value, key)
    if unfit is not None:
        return record, None, Problem(record, f"does not fit the tables: {unfit}"), NOT_AN_EVENT
    if no_entity is not None:
        problem = Problem(record, reason_of("no entity", no_entity), no_entity)
        return record, None, problem, NO_ENTITY
    try:
        return record, decode_with_key(raw, key), None, 0
    except Exception as exc:
        problem = Problem(record, reason_of("the merge raised", exc), exc)
        return record, None, problem, MERGE_RAISES
