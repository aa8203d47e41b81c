"""Token buckets per caller, in process: each key (or client address) may send
``rate`` requests per second on average and ``burst`` at once.

Each worker process has its own buckets, so with ``--workers N`` a caller gets up to N
times the rate; the limit is there to keep one misbehaving dialer or script from starving
the others, not to meter anybody exactly.
"""

from __future__ import annotations

import math
import threading
import time

from shared.errors import RateLimited

# A full bucket is the same as no bucket: past this many, full ones are dropped.
_MAX_BUCKETS = 10_000


class RateLimiter:
    def __init__(self, rate: float, burst: int, what: str = "requests") -> None:
        self.rate = rate
        self.burst = float(burst)
        self.what = what
        # caller -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, caller: str, *, take: bool = True) -> None:
        """Take one token for ``caller`` (only look, without ``take``), or raise
        :class:`RateLimited` with Retry-After when there is none."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise RateLimited(
                    f"too many {self.what}: the limit is {self.rate:g} per second with bursts of "
                    f"{self.burst:g}; retry after the Retry-After seconds",
                    retry_after=max(1, math.ceil(wait)),
                )
            self._buckets[caller] = (tokens - 1.0 if take else tokens, now)
            if len(self._buckets) > _MAX_BUCKETS:
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        for caller, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[caller]
