"""The one place that decides about a batch the aggregator could not apply.

Every failure to apply records ends here (``ProcessingPolicy.apply`` runs the applier and
carries the decision out), and gets one of three answers:

- **retry**: the system failed, not the records (the database or the dead-letter topic away,
  read-only, out of disk, refusing permission, or a bug that breaks every record). The same
  records are tried again after a backoff; nothing is set aside, the member reports itself
  unhealthy (``callboard_aggregator_healthy`` 0, alert ``CallboardAggregatorUnhealthy``).
- **set aside**: the records are at fault. The member sets aside the ones that fail (dead
  letters, with the reason) and the partition moves on, however many there are. The applier
  reports each record it cannot apply (a ``Problem``, ``outcomes.py``) and sets it aside only
  on the policy's word: a record that is no event the tables can take (undecodable, too long
  for its columns) at once, one that raises (no entity, the merge raising) once the records
  are blamed.
- **stop**: the member was asked to stop, or a systemic failure outlasted
  ``db_retry_seconds``: the error ends the process, for its supervisor to start a fresh one.

Errors of the infrastructure say so by their type. Any other error (the merge raising, a
value the database refuses) may be the records' doing or the system's: a migration gone
wrong refuses every row, a bad deployment raises on every event. The policy tells them apart
with a probe: a known-good call applied through the same merge and the same writes, read
back, and rolled back. When the probe fails too, no record could be applied and the failure
is systemic; when it passes, the records are to blame. The probe runs at most once per batch
(``start_batch``), outside the batch's transaction, so that it waits for no lock of its own
member.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from services.aggregator import metrics
from services.aggregator.dead_letters import DeadLetterUnavailable
from services.aggregator.outcomes import BatchResult, Judge, Problem, Record, reason_of

if TYPE_CHECKING:
    from services.aggregator.applier import BatchApplier

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.2
MAX_DELAY_SECONDS = 5.0


class Decision(enum.Enum):
    RETRY = "retry"
    SET_ASIDE = "set_aside"
    STOP = "stop"


def set_aside_every_problem(problem: Problem) -> bool:
    """Once the records are blamed: every record that cannot be applied is set aside."""
    return True


def set_aside_non_events(problem: Problem) -> bool:
    """Before the records are blamed: only records that are no event the tables can take are
    set aside; an error escapes, for the probe to say whose it is."""
    return problem.error is None


def is_infrastructure(exc: BaseException) -> bool:
    """Errors that say by their type that the system failed, not the records.

    A value the database refuses (DataError, IntegrityError) and any other exception (a merge
    that raises) are not among them: the probe decides those. Driver errors come raw from the
    COPY that the repository runs on the driver's cursor, and wrapped by SQLAlchemy from
    everything else.
    """
    if isinstance(exc, (DeadLetterUnavailable, OSError, MemoryError)):
        return True
    if isinstance(exc, SQLAlchemyError):
        return not isinstance(exc, (DataError, IntegrityError))
    if isinstance(exc, psycopg.Error):
        return not isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))
    return False


class ProcessingPolicy:
    """Decides retry, set aside or stop for each failed attempt to apply records.

    ``probe`` applies a known-good record and raises when that fails too.
    """

    def __init__(
        self,
        probe: Callable[[], None],
        *,
        give_up_after_seconds: float,
        stop: threading.Event,
    ) -> None:
        self.probe = probe
        self.give_up_after_seconds = give_up_after_seconds
        self.stop = stop
        self.failing_since: float | None = None
        self._delay = FIRST_DELAY_SECONDS
        # The probe passed during the current batch: its failures are the records' doing.
        self.records_at_fault = False
        metrics.HEALTHY.set(1)

    def start_batch(self) -> None:
        self.records_at_fault = False

    def decide(self, exc: Exception) -> Decision:
        if self.stop.is_set():
            return Decision.STOP
        if not is_infrastructure(exc):
            if self.records_at_fault:
                return Decision.SET_ASIDE
            try:
                self.probe()
            except Exception as probe_exc:
                metrics.PROBES.labels("failed").inc()
                log.error(
                    "a known-good record fails too: the failure is systemic, not the records'",
                    extra={
                        "reason": _describe(exc),
                        "probe_reason": _describe(probe_exc),
                    },
                )
                return self._systemic(exc)
            metrics.PROBES.labels("passed").inc()
            self.records_at_fault = True
            return Decision.SET_ASIDE
        return self._systemic(exc)

    def _systemic(self, exc: Exception) -> Decision:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
            self._delay = FIRST_DELAY_SECONDS
        self.records_at_fault = False
        metrics.HEALTHY.set(0)
        failing_for = now - self.failing_since
        if failing_for > self.give_up_after_seconds:
            log.critical(
                "systemic failure outlasted db_retry_seconds: stopping",
                extra={"failing_seconds": round(failing_for, 1), "reason": _describe(exc)},
            )
            return Decision.STOP
        log.warning(
            "batch not applied, retrying",
            extra={
                "reason": _describe(exc),
                "failing_seconds": round(failing_for, 1),
                "retry_in_seconds": self._delay,
            },
        )
        return Decision.RETRY

    def wait(self) -> None:
        """The backoff before a retry; returns early when the member is asked to stop."""
        metrics.DB_RETRIES.inc()
        self.stop.wait(self._delay)
        self._delay = min(self._delay * 2, MAX_DELAY_SECONDS)

    def succeeded(self) -> None:
        if self.failing_since is not None:
            log.info(
                "batches apply again",
                extra={"failed_seconds": round(time.monotonic() - self.failing_since, 1)},
            )
        self.failing_since = None
        metrics.HEALTHY.set(1)

    def apply(self, applier: BatchApplier, records: list[Record]) -> BatchResult:
        """Apply ``records``, putting every failure to the policy.

        Retried as they are while the system fails (after a backoff, until it outlasts
        ``give_up_after_seconds``); once the records are blamed, applied
        again setting aside the events the merge raises on, and when an error still escapes
        (the database refused a value), each half applied on its own, down to the one record
        to set aside.
        """
        set_aside = False
        refuse: str | None = None
        while True:
            setting_aside = set_aside or self.records_at_fault
            judge: Judge = set_aside_every_problem if setting_aside else set_aside_non_events
            try:
                result = applier.apply(records, refuse=refuse, judge=judge)
            except Exception as exc:
                decision = self.decide(exc)
                if decision is Decision.STOP:
                    raise
                if decision is Decision.RETRY:
                    self.wait()
                    continue
                if not setting_aside:
                    set_aside = True
                    continue
                if refuse is not None:
                    raise  # setting the record aside failed: not the record's doing
                if len(records) == 1:
                    refuse = reason_of("not applied", exc)
                    continue
                log.warning(
                    "batch not applied; bisecting it",
                    extra={"records": len(records), "reason": reason_of("error", exc)[:300]},
                )
                break
            self.succeeded()
            return result
        middle = len(records) // 2
        first = self.apply(applier, records[:middle])
        second = self.apply(applier, records[middle:])
        return BatchResult(
            first.applied + second.applied,
            first.skipped + second.skipped,
            first.rejected + second.rejected,
            first.next_offsets | second.next_offsets,
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
