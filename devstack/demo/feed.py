"""The demo's feeder: yesterday's calls of the simulated floor, then today's as they happen."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import time as clock_time
from typing import Any

import httpx

from devstack.simulator import FloorSimulator

# Each agent starts a call every few seconds on average: a floor compressed in time, so
# that the numbers move on every refresh.
CALL_EVERY_SECONDS = 3.0
# A campaign on a good day (warm leads, renewals): more quotes and closes than the
# simulator's cold-calling default, so the leaderboard fills within the first minute.
DEMO_QUOTE_RATE = 0.4
DEMO_CLOSE_RATE = 0.45
FEED_TICK_SECONDS = 0.5
# After a call an agent wraps up, or now and then takes a pause (the wallboard's grid).
PAUSE_CHANCE = 0.01
PAUSE_REASONS = ("break", "training", "meeting", "lunch")
MAX_EVENTS_PER_REQUEST = 2000
BACKFILL_CALLS_PER_AGENT = 25


@dataclass(frozen=True)
class FeedStats:
    calls: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    backfilled_calls: int = 0
    problem: str | None = None


class Feeder:
    """Posts yesterday's calls once, then today's as they happen, until ``stop`` is set.

    A batch the ingest service could not take (503 while Kafka is away, a timeout) stays
    in the outbox and goes again, with the same event ids, after the wait it asked for.
    """

    def __init__(
        self,
        ingest_url: str,
        simulator: FloorSimulator,
        *,
        zone: tzinfo,
        seed: int,
        stop: threading.Event,
    ) -> None:
        self.simulator = simulator
        self.zone = zone
        self.stop = stop
        self.failure: BaseException | None = None
        self._url = ingest_url
        self._pace = random.Random(seed)
        self._outbox: list[dict[str, Any]] = []
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._stats = FeedStats()
        self._thread = threading.Thread(target=self._run, name="demo-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def stats(self) -> FeedStats:
        with self._lock:
            return self._stats

    def _count(self, **increments: int) -> None:
        with self._lock:
            stats = self._stats
            self._stats = replace(
                stats, **{name: getattr(stats, name) + n for name, n in increments.items()}
            )

    def _note(self, problem: str | None) -> None:
        with self._lock:
            self._stats = replace(self._stats, problem=problem)

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self._url, timeout=15.0) as client:
                self._backfill_yesterday(client)
                self._feed_live(client)
        except Exception as exc:
            self.failure = exc

    def _backfill_yesterday(self, client: httpx.Client) -> None:
        today = datetime.now(self.zone).date()
        opening = datetime.combine(today - timedelta(days=1), clock_time(9), tzinfo=self.zone)
        working_day = timedelta(hours=9).total_seconds()
        calls = 0
        for agent_index in range(len(self.simulator.agents)):
            for _ in range(BACKFILL_CALLS_PER_AGENT):
                at = opening + timedelta(seconds=self._pace.uniform(0, working_day))
                self._outbox.extend(self.simulator.call(at.astimezone(UTC), agent_index))
                calls += 1
        self._count(backfilled_calls=calls)
        while self._outbox and not self.stop.is_set():
            self._flush(client)
            if self._outbox:
                self.stop.wait(max(0.1, self._retry_at - time.monotonic()))

    def _next_gap(self) -> float:
        return max(0.5, self._pace.expovariate(1 / CALL_EVERY_SECONDS))

    def _state(self, agent_index: int, at: datetime, state: str, reason: str | None = None) -> None:
        """An agent's state change, as a dialer reports it (the wallboard's agent grid)."""
        agent_id, team_id = self.simulator.agents[agent_index]
        event = {
            "event_id": self.simulator._id("state"),
            "type": "agent.state_changed",
            "occurred_at": at.isoformat(),
            "agent_id": agent_id,
            "team_id": team_id,
            "state": state,
            **({"reason": reason} if reason else {}),
        }
        self._outbox.append(event)

    def _feed_live(self, client: httpx.Client) -> None:
        started = time.monotonic()
        agents = range(len(self.simulator.agents))
        next_call = [started + self._pace.uniform(0, CALL_EVERY_SECONDS) for _ in agents]
        # When an agent in wrap-up or on a pause is available again (monotonic time).
        back_at: dict[int, float] = {}
        logged_in = datetime.now(UTC)
        for agent_index in agents:
            self._state(agent_index, logged_in, "available")
        while not self.stop.is_set():
            now = time.monotonic()
            wall = datetime.now(UTC)
            calls = 0
            for agent_index, back in list(back_at.items()):
                if back <= now:
                    # Back from wrap-up or a pause: mostly straight into the next call
                    # (reported when it ends), sometimes waiting for one.
                    busy = self._pace.random() < 0.6
                    self._state(agent_index, wall, "on_call" if busy else "available")
                    del back_at[agent_index]
            for agent_index, due in enumerate(next_call):
                if due <= now:
                    # A dialer reports a call once it has ended: the call is placed so
                    # that its last event happened just now.
                    events = self.simulator.call(wall, agent_index, not_after=wall)
                    began = min(datetime.fromisoformat(e["occurred_at"]) for e in events)
                    self._state(agent_index, max(began, logged_in), "on_call")
                    self._outbox.extend(events)
                    gap = self._next_gap()
                    if self._pace.random() < PAUSE_CHANCE:
                        reason = self._pace.choice(PAUSE_REASONS)
                        self._state(agent_index, wall, "paused", reason)
                        gap += self._pace.uniform(10, 45)
                    else:
                        self._state(agent_index, wall, "wrap_up")
                    back_at[agent_index] = now + (gap - 0.5 if gap > 10 else gap * 0.4)
                    next_call[agent_index] = now + gap
                    calls += 1
            if calls:
                self._count(calls=calls)
            if self._outbox and now >= self._retry_at:
                self._flush(client)
            self.stop.wait(FEED_TICK_SECONDS)

    def _flush(self, client: httpx.Client) -> None:
        while self._outbox:
            batch = self._outbox[:MAX_EVENTS_PER_REQUEST]
            try:
                response = client.post("/v1/events", json=batch)
            except httpx.TransportError as exc:
                self._postpone(1.0, f"ingest not answering ({type(exc).__name__}); retrying")
                return
            if response.status_code == 503:
                wait = _retry_after(response.headers.get("Retry-After"))
                self._postpone(wait, f"ingest answered 503 (Kafka away?); retrying in {wait:g} s")
                return
            del self._outbox[: len(batch)]
            if response.status_code != 202:
                # Not worth repeating: the same events would be refused again.
                self._count(sent=len(batch), rejected=len(batch))
                self._note(f"ingest answered {response.status_code}: {response.text[:200]}")
                continue
            body = response.json()
            self._count(
                sent=len(batch),
                accepted=int(body.get("accepted", 0)),
                rejected=len(body.get("rejected", [])),
            )
            self._note(None)

    def _postpone(self, seconds: float, problem: str) -> None:
        self._retry_at = time.monotonic() + seconds
        self._count(retries=1)
        self._note(problem)


def _retry_after(header: str | None) -> float:
    try:
        seconds = float(header) if header else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.5), 5.0)
