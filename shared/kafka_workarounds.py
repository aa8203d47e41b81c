"""Where kafka-python misbehaves for us, and what we do about it; one place for all of it.

Written against kafka-python 3.0.12 (pinned ``>=3.0.12,<4`` in ``pyproject.toml``). Each
workaround reaches into the client's private attributes, so each checks that they are there
and says so in the log when a new release moved them; a new major version means reading
this module again.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def finish_joins_in_flight(consumer: Any) -> None:
    """Make a poll always drive a started rebalance to its end.

    Upstream: the coordinator decides whether to go on with a rebalance by asking
    ``need_rejoin()``. When the member rebalances because the topic's partitions changed
    (partitions added, or the first assignment made before the partitions were known), the
    group leader's own assignment answers "not needed" while its SyncGroup request is still
    in flight. A poll that times out at that moment leaves the answer unread: the member
    keeps no partitions and sends no heartbeats until the broker drops it. A join in
    progress (``rejoining``, set from its start until its assignment is taken) now counts
    as needed.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    needed = getattr(coordinator, "need_rejoin", None)
    if coordinator is None or needed is None or not hasattr(coordinator, "rejoining"):
        log.warning("kafka client without the expected coordinator; joins are not guarded")
        return

    def need_rejoin() -> bool:
        return bool(coordinator.rejoining) or bool(needed())

    coordinator.need_rejoin = need_rejoin


def fail_pending_calls(client: Any, exc: Exception) -> bool:
    """Make the calls waiting on ``client``'s IO thread raise ``exc``; False if it has none.

    Upstream: the network work runs on an IO thread, and a call such as ``poll`` waits for
    that thread without a time limit. After a broker restart such a wait was seen never to
    end (the IO thread idle, the call's task gone). Failing the pending waiters is the only
    way to get the calling thread back without ending the process.
    """
    net = getattr(client, "_net", None)
    fail = getattr(net, "_fail_pending_waiters", None)
    if fail is None:
        return False
    fail(exc)
    return True
