"""One consumed batch turned into table changes, aggregated in memory.

The entities a batch touches are loaded once, every event is merged into them, and the
difference between each entity's contribution before and after the batch becomes a delta on
the minute and day tables. The repository then writes the deltas in one transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import Any

from services.aggregator.decoded import DecodedEvent
from services.aggregator.facts import Contribution, LeadFact, Scope, State, contribution, merge
from shared.dispositions import DEFAULT_TABLE, DispositionTable
from shared.events import EventType
from shared.timeutil import floor_local_hour, parse_minute_text
from shared.timeutil import week_start as week_start_of

log = logging.getLogger(__name__)

MinuteKey = tuple[datetime, Scope]
DayKey = tuple[date, Scope]


@dataclass(frozen=True, slots=True)
class Calendar:
    """Where a UTC minute falls in the deployment's time zone."""

    minute: datetime
    hour: datetime
    day: date
    week: date
    month: date


def calendar_for(zone: tzinfo, week_start: int = 0) -> Any:
    """A cached function from a UTC timestamp text to its :class:`Calendar`."""

    @lru_cache(maxsize=65536)
    def at(minute_text: str) -> Calendar:
        minute = parse_minute_text(minute_text)
        local = minute.astimezone(zone)
        day = local.date()
        week = week_start_of(day, week_start)
        return Calendar(minute, floor_local_hour(minute, zone), day, week, day.replace(day=1))

    return at


@dataclass(slots=True)
class LeadFactRow:
    source: str
    fact: str
    value: LeadFact | None  # None: delete the row
    previous: LeadFact | None = None  # what the row held before the batch


@dataclass(slots=True)
class BatchDelta:
    """Everything one batch changes, ready to be written."""

    minute_counters: dict[MinuteKey, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    day_counters: dict[DayKey, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    minute_dispositions: dict[tuple[datetime, Scope, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    day_dispositions: dict[tuple[date, Scope, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    lead_facts: list[LeadFactRow] = field(default_factory=list)
    states: dict[str, State] = field(default_factory=dict)
    roster: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    agent_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Orders whose sale this batch counts for the first time, by order id (``sale_feed``).
    new_sales: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The funnel: every stage change by event id.
    stage_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: int = 0

    def latest_stages(self) -> list[dict[str, Any]]:
        """Each lead's latest stage change in the batch (by occurred_at, then event id)."""
        latest: dict[str, dict[str, Any]] = {}
        for row in self.stage_changes.values():
            known = latest.get(row["lead_id"])
            if known is None or (row["occurred_at"], row["event_id"]) > (
                known["occurred_at"],
                known["event_id"],
            ):
                latest[row["lead_id"]] = row
        return list(latest.values())


class BatchBuilder:
    """Folds decoded events (:mod:`services.aggregator.decoded`) into a :class:`BatchDelta`."""

    def __init__(
        self,
        zone: tzinfo,
        effective_call_seconds: int,
        week_start: int = 0,
        dispositions: DispositionTable = DEFAULT_TABLE,
    ) -> None:
        self._calendar = calendar_for(zone, week_start)
        self._effective = effective_call_seconds
        self._dispositions = dispositions
        self.week_start = week_start
        self._by_minute: dict[datetime, Calendar] = {}

    def build(self, events: list[DecodedEvent], stored: dict[str, State]) -> BatchDelta:
        """Merge ``events`` into the ``stored`` states of the entities they touch."""
        delta = BatchDelta(events=len(events))
        current: dict[str, State | None] = {}
        for event in events:
            self._track_agent(event, delta)
            if event.type == EventType.lead_stage_changed:
                self._track_stage(event, delta)
            key = event.key
            if key is None:
                continue
            if key in current:
                current[key] = merge(current[key], event, in_place=True)
            else:
                current[key] = merge(stored.get(key), event)
        for key, state in current.items():
            before = stored.get(key)
            if state == before:
                continue
            assert state is not None
            delta.states[key] = state
            old = contribution(before, self._effective, self._dispositions)
            new = contribution(state, self._effective, self._dispositions)
            self._apply(key, old, new, delta)
            if key.startswith("order:"):
                self._track_sale(key.removeprefix("order:"), old, new, delta)
        return delta

    def _track_agent(self, event: DecodedEvent, delta: BatchDelta) -> None:
        agent_id = event.agent_id
        if not agent_id:
            return
        team_id = event.team_id
        if team_id:
            candidate = (event.ts, event.event_id, team_id)
            known = delta.roster.get(agent_id)
            if known is None or candidate > known:
                delta.roster[agent_id] = candidate
        if event.type == EventType.agent_state_changed:
            delta.agent_states[event.event_id] = {
                "event_id": event.event_id,
                "agent_id": agent_id,
                "team_id": team_id or "",
                "state": event.state,
                "occurred_at": event.occurred_at,
                "reason": event.reason,
            }

    def _track_sale(
        self, order_id: str, old: Contribution, new: Contribution, delta: BatchDelta
    ) -> None:
        """A sale the order did not count before and counts now."""
        if any(values.get("sales") for values in old.counters.values()):
            return
        for (ts, scope), values in new.counters.items():
            if values.get("sales"):
                delta.new_sales[order_id] = {
                    "order_id": order_id,
                    "agent_id": scope[0],
                    "team_id": scope[1],
                    "campaign_id": scope[2],
                    "amount": values.get("revenue", 0),
                    "occurred_at": datetime.fromisoformat(ts),
                }

    def _track_stage(self, event: DecodedEvent, delta: BatchDelta) -> None:
        row = {
            "event_id": event.event_id,
            "lead_id": event.lead_id,
            "stage": event.stage,
            "occurred_at": event.occurred_at,
            "agent_id": event.agent_id or "",
            "team_id": event.team_id or "",
            "campaign_id": event.campaign_id or "",
        }
        delta.stage_changes[row["event_id"]] = row

    def _apply(self, key: str, old: Contribution, new: Contribution, delta: BatchDelta) -> None:
        for sign, part in ((-1, old), (1, new)):
            for (ts, scope), values in part.counters.items():
                cal = self.calendar(ts)
                minute_row = delta.minute_counters[(cal.minute, scope)]
                day_row = delta.day_counters[(cal.day, scope)]
                for name, value in values.items():
                    minute_row[name] += sign * value
                    day_row[name] += sign * value
            for (ts, scope, code), calls in part.dispositions.items():
                cal = self.calendar(ts)
                delta.minute_dispositions[(cal.minute, scope, code)] += sign * calls
                delta.day_dispositions[(cal.day, scope, code)] += sign * calls
        for fact in old.lead_facts.keys() | new.lead_facts.keys():
            after = new.lead_facts.get(fact)
            before = old.lead_facts.get(fact)
            if after != before:
                delta.lead_facts.append(LeadFactRow(key, fact, after, before))

    def calendar(self, ts: str) -> Calendar:
        """The calendar position of a UTC timestamp text."""
        cal: Calendar = self._calendar(ts[:16])
        self._by_minute[cal.minute] = cal
        return cal

    def at_minute(self, minute: datetime) -> Calendar:
        """The calendar position of a minute seen by :meth:`calendar`."""
        return self._by_minute[minute]
