"""The wallboard's routes on a small floor posted relative to now, every value worked out by
hand: agents now (state, since, reason, call in progress, today's counts, quiet), the rates
per hour logged in against the reference, and what a team-limited key sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.pipeline import TIMEZONE, MakePipeline, Pipeline
from tests.reference import PER_LOGGED_IN_HOUR, logged_in_seconds, per_logged_in_hour

pytestmark = pytest.mark.pipeline
ADMIN_KEY = "bootstrap-admin-key-for-the-board-tests-0123"
QUIET_SECONDS = 600
ZONE = ZoneInfo(TIMEZONE)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_key(pipeline: Pipeline, **body: Any) -> dict[str, Any]:
    response = pipeline.api.post("/v1/admin/keys", json=body, headers=bearer(ADMIN_KEY))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def state(event_id: str, agent: str, team: str, at: datetime, name: str, **extra: Any) -> Any:
    return {
        "event_id": event_id,
        "type": "agent.state_changed",
        "occurred_at": at.isoformat(),
        "agent_id": agent,
        "team_id": team,
        "state": name,
        **extra,
    }


def call(call_id: str, agent: str, team: str, at: datetime, *, talk: int | None) -> list[Any]:
    """A call started at ``at``; with ``talk``, answered by a human (a contact) and ended."""
    common = {"call_id": call_id, "agent_id": agent, "team_id": team}
    events: list[Any] = [
        {
            "event_id": f"{call_id}-s",
            "type": "call.started",
            "occurred_at": at.isoformat(),
            "lead_id": f"L-{call_id}",
            **common,
        }
    ]
    if talk is not None:
        events += [
            {
                "event_id": f"{call_id}-a",
                "type": "call.answered",
                "occurred_at": (at + timedelta(seconds=5)).isoformat(),
                **common,
            },
            {
                "event_id": f"{call_id}-e",
                "type": "call.ended",
                "occurred_at": (at + timedelta(seconds=5 + talk)).isoformat(),
                "talk_seconds": talk,
                **common,
            },
        ]
    return events


class Floor:
    """b1 (T1) available 20 min ago, a connected call 10 min ago, a sale of 1234.50 8 min
    ago, on a call (c-b1-2) since 90 s ago; b2 (T1) paused for lunch 20 min ago, and said so
    again 15 min ago; b3 (T2) available 2 h ago, logged out 1 h ago; b4 (T2) in wrap-up
    since 5 min ago after a call 7 min ago."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)
        now = self.now
        self.at = {
            "b1 available": now - timedelta(minutes=20),
            "b1 first call": now - timedelta(minutes=10),
            "b1 sale": now - timedelta(minutes=8),
            "b1 on_call": now - timedelta(seconds=90),
            "b2 available": now - timedelta(minutes=30),
            "b2 paused": now - timedelta(minutes=20),
            "b2 paused again": now - timedelta(minutes=15),
            "b3 available": now - timedelta(hours=2),
            "b3 logged_out": now - timedelta(hours=1),
            "b4 call": now - timedelta(minutes=7),
            "b4 wrap_up": now - timedelta(minutes=5),
        }
        at = self.at
        self.events: list[Any] = [
            state("st-b1-1", "b1", "T1", at["b1 available"], "available"),
            *call("c-b1-1", "b1", "T1", at["b1 first call"], talk=60),
            {
                "event_id": "sale-b1",
                "type": "sale.closed",
                "occurred_at": at["b1 sale"].isoformat(),
                "agent_id": "b1",
                "team_id": "T1",
                "campaign_id": "k1",
                "lead_id": "L-c-b1-1",
                "order_id": "o-b1",
                "amount": "1234.50",
            },
            state("st-b1-2", "b1", "T1", at["b1 on_call"], "on_call"),
            *call("c-b1-2", "b1", "T1", at["b1 on_call"], talk=None),
            state("st-b2-1", "b2", "T1", at["b2 available"], "available"),
            state("st-b2-2", "b2", "T1", at["b2 paused"], "paused", reason="lunch"),
            state("st-b2-3", "b2", "T1", at["b2 paused again"], "paused", reason="lunch"),
            state("st-b3-1", "b3", "T2", at["b3 available"], "available"),
            state("st-b3-2", "b3", "T2", at["b3 logged_out"], "logged_out"),
            *call("c-b4-1", "b4", "T2", at["b4 call"], talk=30),
            state("st-b4-1", "b4", "T2", at["b4 wrap_up"], "wrap_up"),
        ]

    def today(self, moment: datetime) -> bool:
        local = self.now.astimezone(ZONE)
        return moment >= local.replace(hour=0, minute=0, second=0)


@pytest.fixture
def board(make_pipeline: MakePipeline) -> tuple[Pipeline, Floor]:
    pipeline = make_pipeline(
        CALLBOARD_ADMIN_KEY=ADMIN_KEY, CALLBOARD_AGENT_QUIET_SECONDS=str(QUIET_SECONDS)
    )
    floor = Floor()
    pipeline.post(floor.events)
    pipeline.wait_caught_up()
    return pipeline, floor


def _local(moment: datetime) -> str:
    return moment.astimezone(ZONE).isoformat()


def test_agents_now(board: tuple[Pipeline, Floor]) -> None:
    pipeline, floor = board
    at = floor.at
    key = create_key(pipeline, name="floor", scopes=["read"])["key"]
    response = pipeline.api.get("/v1/agents/now", headers=bearer(key))
    assert response.status_code == 200, response.text
    body = response.json()
    asked = datetime.fromisoformat(body["as_of"])
    assert (body["timezone"], body["quiet_after_seconds"]) == (TIMEZONE, QUIET_SECONDS)
    agents = {a["agent_id"]: a for a in body["agents"]}
    assert [a["agent_id"] for a in body["agents"]] == ["b1", "b2", "b3", "b4"]

    b1 = agents["b1"]
    assert (b1["team_id"], b1["state"], b1["reason"]) == ("T1", "on_call", None)
    assert b1["since"] == _local(at["b1 on_call"])
    call = b1["call"]
    assert (call["call_id"], call["started_at"]) == ("c-b1-2", _local(at["b1 on_call"]))
    assert call["seconds"] == int((asked - at["b1 on_call"]).total_seconds())
    # Counted today only if it happened after local midnight (the test may run just after).
    dials = floor.today(at["b1 first call"]) + floor.today(at["b1 on_call"])
    sold = floor.today(at["b1 sale"])
    assert b1["today"] == {
        "dials": dials,
        "connects": int(floor.today(at["b1 first call"])),
        "sales": int(sold),
        "revenue": "1234.50" if sold else "0.00",
    }
    assert b1["last_event_at"] == _local(at["b1 on_call"]) and b1["quiet"] is False

    b2 = agents["b2"]
    # The second "paused, lunch" does not restart the time in state; it is b2's last event.
    assert (b2["state"], b2["reason"], b2["since"]) == ("paused", "lunch", _local(at["b2 paused"]))
    assert b2["call"] is None
    assert b2["today"] == {"dials": 0, "connects": 0, "sales": 0, "revenue": "0.00"}
    assert b2["last_event_at"] == _local(at["b2 paused again"])
    assert b2["quiet"] is True  # 15 min without an event, more than 600 s

    b3 = agents["b3"]
    assert (b3["state"], b3["since"], b3["quiet"]) == (
        "logged_out",
        _local(at["b3 logged_out"]),
        False,  # logged out: never quiet
    )

    b4 = agents["b4"]
    assert (b4["team_id"], b4["state"], b4["since"]) == ("T2", "wrap_up", _local(at["b4 wrap_up"]))
    assert b4["call"] is None and b4["quiet"] is False
    assert b4["today"]["dials"] == int(floor.today(at["b4 call"]))


def test_agents_now_for_a_team_limited_key(board: tuple[Pipeline, Floor]) -> None:
    pipeline, _ = board
    key = create_key(pipeline, name="t1 board", scopes=["read"], team_ids=["T1"])["key"]
    body = pipeline.api.get("/v1/agents/now", headers=bearer(key)).json()
    assert [a["agent_id"] for a in body["agents"]] == ["b1", "b2"]
    assert {a["team_id"] for a in body["agents"]} == {"T1"}
    refused = pipeline.api.get("/v1/agents/now", params={"team_id": "T2"}, headers=bearer(key))
    assert refused.status_code == 403
    assert set(refused.json()) == {"error"}
    anybody = pipeline.api.get("/v1/agents/now")
    assert anybody.status_code == 401
    # A campaign filter keeps the agents with counts in it today.
    full = create_key(pipeline, name="all", scopes=["read"])["key"]
    by_campaign = pipeline.api.get(
        "/v1/agents/now", params={"campaign_id": "k1"}, headers=bearer(full)
    ).json()
    floor = board[1]
    expected = ["b1"] if floor.today(floor.at["b1 sale"]) else []
    assert [a["agent_id"] for a in by_campaign["agents"]] == expected


def test_reasons_are_checked_at_ingest(pipeline: Pipeline) -> None:
    now = datetime.now(UTC).isoformat()
    for reason, accepted in (
        ("training", True),
        ("x" * 32, True),
        ("x" * 33, False),
        ("", False),
        ("13800138000", False),
        ("alice@example.com", False),
        ("tab\there", False),
    ):
        event = state(f"r-{len(reason)}-{accepted}", "r1", "T1", datetime.now(UTC), "paused")
        event["occurred_at"] = now
        event["reason"] = reason
        response = pipeline.ingest.post("/v1/events", json=event)
        assert (response.status_code == 202) is accepted, (reason, response.text)


def test_rates_per_hour_logged_in_match_the_reference(board: tuple[Pipeline, Floor]) -> None:
    pipeline, floor = board
    key = create_key(pipeline, name="all", scopes=["read"])["key"]
    start = (floor.now - timedelta(hours=3)).replace(second=0)
    end = floor.now.replace(second=0)
    response = pipeline.api.get(
        "/v1/metrics",
        params={
            "from": start.isoformat(),
            "to": end.isoformat(),
            "group_by": "agent",
            "metrics": ",".join(PER_LOGGED_IN_HOUR),
        },
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    rows = {row["agent_id"]: row for row in response.json()["rows"]}
    # The counts in the range, straight from the events.
    counted: dict[str, dict[str, int]] = {}
    for event in floor.events:
        moment = datetime.fromisoformat(event["occurred_at"])
        agent = counted.setdefault(event["agent_id"], {"dials": 0, "sales": 0, "contacts": 0})
        if not start <= moment < end:
            continue
        if event["type"] == "call.started":
            agent["dials"] += 1
        elif event["type"] == "sale.closed":
            agent["sales"] += 1
        elif event["type"] == "call.answered":
            # Answered calls are counted at their start, 5 s earlier: inside too here.
            agent["contacts"] += 1
    for agent_id in ("b1", "b2", "b3", "b4"):
        seconds = logged_in_seconds(floor.events, agent_id, start, end)
        for kpi, count in PER_LOGGED_IN_HOUR.items():
            expected = per_logged_in_hour(counted[agent_id][count], seconds)
            got = rows.get(agent_id, {}).get(kpi)
            assert got == expected, (agent_id, kpi, got, expected, seconds)
    # b1 has been logged in since it went available 20 minutes ago.
    assert logged_in_seconds(floor.events, "b1", start, end) == Decimal(
        int((end - floor.at["b1 available"]).total_seconds())
    )
