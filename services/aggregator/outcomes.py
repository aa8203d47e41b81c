"""What applying records found: the records, the ones that could not be applied and why, and
the batch's result.

The applier reports a :class:`Problem` for each record it cannot apply; the policy
(``policy.py``) answers whether to set it aside. They meet here so that neither imports the
other's workings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Problem:
    """A record the applier cannot apply, and why.

    ``error`` is what raised on it (it lacks its entity, or the merge raises on it); ``None``
    when the record is not an event the tables can take at all. ``record`` is ``None`` when
    the merge of a whole batch raised, before the applier looks for the events to blame.
    """

    record: Record | None
    reason: str
    error: Exception | None = None


# The policy's answer about one problem: set the record aside (True), or let its error
# escape the attempt (False).
Judge = Callable[[Problem], bool]


@dataclass(slots=True)
class BatchResult:
    applied: int
    skipped: int
    # Records set aside in the dead-letter topic.
    rejected: int
    next_offsets: dict[int, int]


def reason_of(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"
