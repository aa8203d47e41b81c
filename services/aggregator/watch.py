"""A watch on the Kafka client's calls: one that never returns is failed, then the process ends.

A call of the Kafka client may never return (``shared.kafka_workarounds.fail_pending_calls``
says why): the member would apply nothing while it looked alive. The watch fails the
client's pending waits once a call has run for ``limit`` seconds, so the call raises
:class:`ClientStalled` and the member replaces its client; a call still running ``limit``
seconds after that ends the process, for its supervisor to start it again (nothing is
lost: offsets live with the numbers).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from services.aggregator import metrics
from shared.kafka_workarounds import fail_pending_calls

log = logging.getLogger(__name__)

EXIT_STALLED = 70


class ClientStalled(Exception):
    """A Kafka client call did not return in time and was failed by the watch."""


class CallWatch:
    def __init__(self, limit: float, *, exit: Callable[[int], Any] = os._exit) -> None:
        self.limit = limit
        self._exit = exit
        self._lock = threading.Lock()
        self._call: tuple[str, float, Any] | None = None
        self._failed_at: float | None = None
        self._stop = threading.Event()

    @contextmanager
    def call(self, name: str, client: Any) -> Iterator[None]:
        """Watch one call of ``client`` (a KafkaConsumer) named ``name``."""
        with self._lock:
            self._call = (name, time.monotonic(), client)
            self._failed_at = None
        try:
            yield
        finally:
            with self._lock:
                self._call = None
                self._failed_at = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="kafka-call-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        with self._lock:
            call, failed_at = self._call, self._failed_at
            if call is None:
                return
            name, since, client = call
            if now - since < self.limit:
                return
            if failed_at is None:
                self._failed_at = now
        if failed_at is None:
            log.error(
                "kafka client call has not returned; failing it to replace the client",
                extra={"call": name, "waited_seconds": round(now - since, 1)},
            )
            metrics.CLIENT_STALLS.inc()
            stalled = ClientStalled(f"{name} did not return in {self.limit} s")
            if not fail_pending_calls(client, stalled):
                log.warning("this kafka client has no pending waits to fail; waiting to exit")
        elif now - failed_at >= self.limit:
            log.critical(
                "kafka client call still has not returned; exiting for a restart",
                extra={"call": name, "waited_seconds": round(now - since, 1)},
            )
            self._exit(EXIT_STALLED)
