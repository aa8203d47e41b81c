"""The watch on the aggregator's Kafka client calls: a call that never returns is failed."""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import KafkaConsumer
from kafka.future import Future

from services.aggregator.watch import EXIT_STALLED, CallWatch, ClientStalled


class _Waiters:
    """What the watch reaches in a client: its IO thread's pending waits."""

    def __init__(self) -> None:
        self.failed: list[Exception] = []

    def _fail_pending_waiters(self, exc: Exception) -> None:
        self.failed.append(exc)


class _Client:
    def __init__(self) -> None:
        self._net = _Waiters()


def test_a_call_is_failed_after_the_limit_and_the_process_ends_after_twice() -> None:
    exits: list[int] = []
    watch = CallWatch(30, exit=exits.append)
    client = _Client()
    with watch.call("poll", client):
        started = time.monotonic()
        watch.check(started + 29)
        assert client._net.failed == [] and exits == []
        watch.check(started + 31)
        assert [type(e) for e in client._net.failed] == [ClientStalled]
        assert "poll" in str(client._net.failed[0])
        watch.check(started + 45)
        assert len(client._net.failed) == 1 and exits == []
        watch.check(started + 62)
        assert exits == [EXIT_STALLED]
    watch.check(time.monotonic() + 100)  # no call running: nothing to fail
    assert len(client._net.failed) == 1 and exits == [EXIT_STALLED]


def test_each_call_gets_its_own_limit() -> None:
    exits: list[int] = []
    watch = CallWatch(30, exit=exits.append)
    client = _Client()
    with watch.call("poll", client):
        watch.check(time.monotonic() + 31)
    with watch.call("commit", client):
        watch.check(time.monotonic() + 20)
        assert len(client._net.failed) == 1
        watch.check(time.monotonic() + 31)  # failed once more, not ended
        assert len(client._net.failed) == 2 and exits == []


def test_a_real_client_wait_that_never_ends_is_failed(kafka_bootstrap_servers: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap_servers)
    watch = CallWatch(1.0, exit=lambda code: None)
    watch.start()
    outcome: list[Any] = []

    def wait_forever() -> None:
        # A wait on the client's IO thread for a result that never comes, with no time
        # limit: the shape of the hang seen after broker restarts.
        try:
            with watch.call("poll", consumer):
                consumer._net.run(consumer._manager.wait_for, Future(), None)
        except ClientStalled as exc:
            outcome.append(exc)

    try:
        caller = threading.Thread(target=wait_forever, daemon=True)
        started = time.monotonic()
        caller.start()
        caller.join(timeout=10)
        assert not caller.is_alive(), "the watch did not fail the call"
        assert len(outcome) == 1
        assert 1.0 <= time.monotonic() - started < 5
    finally:
        watch.stop()
        consumer.close()
