"""A simulated telesales floor: teams of agents dialing leads, as a dialer would report it.

Used by ``callboard demo`` (in real time) and by the benchmarks (as fast as possible). Each
call goes out either as separate ``call.*`` events or as one ``call.completed`` record;
some connect, some reach the decision-maker, some lead to a quote and a sale.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Codes whose flags (shared/dispositions.py) agree with what happened on the call; six of
# each (some twice), so that a seed draws the same floor whatever the codes.
CONTACT_CODES = ("NI", "CALLBK", "DNC", "DEC", "NI", "CALLBK")
ANSWERED_CODES = ("AM", "NP", "AM", "NP", "AM", "NP")  # a machine, or not the customer
UNANSWERED_CODES = ("NA", "B", "NA", "B", "NA", "NA")


@dataclass
class FloorShape:
    teams: int = 3
    agents_per_team: int = 6
    leads_per_agent: int = 400
    connect_rate: float = 0.45
    contact_rate: float = 0.7
    quote_rate: float = 0.3
    close_rate: float = 0.35
    campaigns: tuple[str, ...] = ("spring-promo", "renewals")


@dataclass
class FloorSimulator:
    """Produces the events of a floor; ``seed`` makes a run repeatable."""

    shape: FloorShape = field(default_factory=FloorShape)
    seed: int = 1
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.agents = [
            (f"agent-{t + 1:02d}-{a + 1:02d}", f"team-{t + 1:02d}")
            for t in range(self.shape.teams)
            for a in range(self.shape.agents_per_team)
        ]
        # Agents differ, so the leaderboard has something to show.
        self.skill = {agent: self.rng.uniform(0.6, 1.4) for agent, _ in self.agents}
        self._seq = 0

    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self.run_id}-{self._seq}"

    def call(
        self, at: datetime, agent_index: int | None = None, *, not_after: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The events of one outbound call started at ``at`` by one agent.

        With ``not_after``, the whole call is moved earlier so that its last event happened
        by then: a live floor reports calls that have ended, never events in the future.
        """
        rng = self.rng
        index = rng.randrange(len(self.agents)) if agent_index is None else agent_index
        agent_id, team_id = self.agents[index]
        skill = self.skill[agent_id]
        shape = self.shape
        lead_id = f"lead-{agent_id}-{rng.randrange(shape.leads_per_agent)}"
        call_id = self._id("call")
        campaign_id = rng.choice(shape.campaigns)
        answered = rng.random() < shape.connect_rate
        contact = answered and rng.random() < min(shape.contact_rate * skill, 0.98)
        talk = int(rng.expovariate(1 / 150)) + 10 if contact else rng.randrange(0, 20) * answered
        wrap = rng.randrange(5, 60) if answered else 0
        quoted = contact and rng.random() < min(shape.quote_rate * skill, 0.95)
        sold = quoted and rng.random() < min(shape.close_rate * skill, 0.95)
        codes = CONTACT_CODES if contact else ANSWERED_CODES if answered else UNANSWERED_CODES
        disposition = "SALE" if sold else rng.choice(codes)
        base = {"agent_id": agent_id, "team_id": team_id, "campaign_id": campaign_id}
        events: list[dict[str, Any]]
        if rng.random() < 0.3:
            events = [
                {
                    "event_id": self._id("ev"),
                    "type": "call.completed",
                    "occurred_at": at.isoformat(),
                    **base,
                    "call_id": call_id,
                    "lead_id": lead_id,
                    "answered": answered,
                    "contact_reached": contact,
                    "talk_seconds": talk,
                    "wrap_seconds": wrap,
                    "disposition": disposition,
                }
            ]
        else:
            events = [
                {
                    "event_id": self._id("ev"),
                    "type": "call.started",
                    "occurred_at": at.isoformat(),
                    **base,
                    "call_id": call_id,
                    "lead_id": lead_id,
                }
            ]
            if answered:
                events.append(
                    {
                        "event_id": self._id("ev"),
                        "type": "call.answered",
                        "occurred_at": (at + timedelta(seconds=6)).isoformat(),
                        **base,
                        "call_id": call_id,
                        "contact_reached": contact,
                    }
                )
            ended = at + timedelta(seconds=6 + talk)
            events.append(
                {
                    "event_id": self._id("ev"),
                    "type": "call.ended",
                    "occurred_at": ended.isoformat(),
                    **base,
                    "call_id": call_id,
                    "talk_seconds": talk,
                    "wrap_seconds": wrap,
                }
            )
            events.append(
                {
                    "event_id": self._id("ev"),
                    "type": "call.dispositioned",
                    "occurred_at": (ended + timedelta(seconds=wrap)).isoformat(),
                    **base,
                    "call_id": call_id,
                    "disposition": disposition,
                }
            )
        if quoted:
            events.append(
                {
                    "event_id": self._id("ev"),
                    "type": "quote.given",
                    "occurred_at": (at + timedelta(seconds=talk)).isoformat(),
                    **base,
                    "lead_id": lead_id,
                    "amount": str(rng.randrange(500, 20000)),
                }
            )
        if sold:
            events.append(
                {
                    "event_id": self._id("ev"),
                    "type": "sale.closed",
                    "occurred_at": (at + timedelta(seconds=talk + 5)).isoformat(),
                    **base,
                    "lead_id": lead_id,
                    "order_id": self._id("order"),
                    "amount": f"{rng.randrange(50_000, 2_000_000) / 100:.2f}",
                    "margin": f"{rng.randrange(5_000, 300_000) / 100:.2f}",
                }
            )
        if not_after is not None:
            last = max(datetime.fromisoformat(e["occurred_at"]) for e in events)
            if last > not_after:
                shift = last - not_after
                for event in events:
                    moved = datetime.fromisoformat(event["occurred_at"]) - shift
                    event["occurred_at"] = moved.isoformat()
        return events

    def events(
        self, count: int, start: datetime, span: timedelta, *, in_order: bool = False
    ) -> Iterator[dict[str, Any]]:
        """At least ``count`` events of calls spread over ``[start, start + span)``.

        In random order by default (a history import); ``in_order`` starts the calls one
        after another, as a dialer reports a working floor.
        """
        produced = calls = 0
        seconds = span.total_seconds()
        cursor = 0.0
        while produced < count:
            if in_order:
                # Evenly spaced with jitter; the spacing follows the events per call so far,
                # so that the calls fill the whole span.
                per_call = produced / calls if calls else 3.0
                step = (seconds - cursor) / max((count - produced) / per_call, 1.0)
                offset = cursor + self.rng.uniform(0, step)
                cursor += step
            else:
                offset = self.rng.uniform(0, seconds)
            calls += 1
            at = start + timedelta(seconds=offset)
            for event in self.call(at.astimezone(UTC)):
                produced += 1
                yield event
