"""Faults the tests inject into an aggregator process, set by ``CALLBOARD_FAILPOINT``.

``CALLBOARD_FAILPOINT=name:argument``, read once per process:

- ``after_db_commit:N``: die hard after the Nth batch's database commit, before Kafka's.
- ``mid_batch:N``: die hard inside the Nth transaction, its rows written, not committed.
- ``apply_error:PREFIX``: the merge raises on events whose id starts with PREFIX, as a bug
  would.

Unset (production), every check is one comparison.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)

# The exit status of a process killed by SIGKILL, as the tests expect of a crash.
EXIT_KILLED = 137


class Failpoints:
    """The failpoint set when its owner was made (the environment is read once)."""

    def __init__(self) -> None:
        spec = os.environ.get("CALLBOARD_FAILPOINT", "")
        name, _, argument = spec.partition(":")
        self.point = (name, argument) if ":" in spec else None

    def crash_at(self, name: str, count: int) -> None:
        """Die hard when the failpoint ``name`` is set to ``count``."""
        if self.point == (name, str(count)):
            log.critical("failpoint reached: exiting", extra={"failpoint": name, "count": count})
            os._exit(EXIT_KILLED)

    def raise_on_events(self, event_ids: Iterable[str]) -> None:
        """``apply_error``: raise on the first event whose id starts with its prefix."""
        if self.point is None or self.point[0] != "apply_error":
            return
        for event_id in event_ids:
            if event_id.startswith(self.point[1]):
                raise RuntimeError(f"failpoint apply_error: {event_id}")
