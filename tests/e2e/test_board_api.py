"""The wallboard's routes on a small floor posted relative to now, every value worked out by
hand: agents now (state, since, reason, call in progress, today's counts, quiet), the rates
per hour logged in against the reference, and what a team-limited key sees.

Over 500 lines as one module: every test reads the one floor posted relative to now."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.pipeline import TIMEZONE, MakePipeline, Pipeline, bearer, create_key
from tests.reference import PER_LOGGED_IN_HOUR, capacity, logged_in_seconds, per_logged_in_hour

ADMIN_KEY = "bootstrap-admin-key-for-the-board-tests-0123"
QUIET_SECONDS = 600
ZONE = ZoneInfo(TIMEZONE)


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
    key = create_key(pipeline, ADMIN_KEY, name="floor", scopes=["read"])["key"]
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
    key = create_key(pipeline, ADMIN_KEY, name="t1 board", scopes=["read"], team_ids=["T1"])["key"]
    body = pipeline.api.get("/v1/agents/now", headers=bearer(key)).json()
    assert [a["agent_id"] for a in body["agents"]] == ["b1", "b2"]
    assert {a["team_id"] for a in body["agents"]} == {"T1"}
    refused = pipeline.api.get("/v1/agents/now", params={"team_id": "T2"}, headers=bearer(key))
    assert refused.status_code == 403
    assert set(refused.json()) == {"error"}
    anybody = pipeline.api.get("/v1/agents/now")
    assert anybody.status_code == 401
    # A campaign filter keeps the agents with counts in it today.
    full = create_key(pipeline, ADMIN_KEY, name="all", scopes=["read"])["key"]
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
    key = create_key(pipeline, ADMIN_KEY, name="all", scopes=["read"])["key"]
    start = (floor.now - timedelta(hours=3)).replace(second=0)
    end = floor.now.replace(second=0)
    response = pipeline.api.get(
        "/v1/metrics",
        params={
            "from": start.isoformat(),
            "to": end.isoformat(),
            "group_by": "agent",
            "metrics": ",".join((*PER_LOGGED_IN_HOUR, "capacity")),
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
    # Capacity's parts, each call counted at its start: leads dialed, connects, handle time.
    starts = {
        e["call_id"]: (e["agent_id"], e["lead_id"], datetime.fromisoformat(e["occurred_at"]))
        for e in floor.events
        if e["type"] == "call.started"
    }
    leads: dict[str, set[str]] = {}
    connects: dict[str, int] = {}
    handle: dict[str, Decimal] = {}
    for event in floor.events:
        if not event["type"].startswith("call.") or not start <= starts[event["call_id"]][2] < end:
            continue
        agent_id, lead, _ = starts[event["call_id"]]
        if event["type"] == "call.started":
            leads.setdefault(agent_id, set()).add(lead)
        elif event["type"] == "call.answered":
            connects[agent_id] = connects.get(agent_id, 0) + 1
        elif event["type"] == "call.ended":
            worked = Decimal(event["talk_seconds"]) + Decimal(event.get("wrap_seconds", 0))
            handle[agent_id] = handle.get(agent_id, Decimal(0)) + worked
    capacities = []
    for agent_id in ("b1", "b2", "b3", "b4"):
        seconds = logged_in_seconds(floor.events, agent_id, start, end)
        for kpi, count in PER_LOGGED_IN_HOUR.items():
            expected = per_logged_in_hour(counted[agent_id][count], seconds)
            got = rows.get(agent_id, {}).get(kpi)
            assert got == expected, (agent_id, kpi, got, expected, seconds)
        expected = capacity(
            seconds,
            dials=counted[agent_id]["dials"],
            leads=len(leads.get(agent_id, ())),
            connects=connects.get(agent_id, 0),
            handle=handle.get(agent_id, Decimal(0)),
        )
        capacities.append(rows.get(agent_id, {}).get("capacity"))
        assert capacities[-1] == expected, (agent_id, capacities[-1], expected, seconds)
    # b1 and b4 talked (b1 also dialed a lead no one answered); b2 and b3 made no call.
    assert [value is None for value in capacities] == [False, True, True, False]
    # Ranked on the leaderboard like any ratio: the two with a capacity, highest first.
    ranked = pipeline.api.get(
        "/v1/leaderboard",
        params={"metric": "capacity", "from": start.isoformat(), "to": end.isoformat()},
        headers=bearer(key),
    )
    assert ranked.status_code == 200, ranked.text
    known = sorted(
        (
            (value, agent_id)
            for agent_id, value in zip(("b1", "b2", "b3", "b4"), capacities, strict=True)
            if value is not None
        ),
        reverse=True,
    )
    assert [(r["agent_id"], r["value"]) for r in ranked.json()["rows"]] == [
        (agent_id, value) for value, agent_id in known
    ]
    # b1 has been logged in since it went available 20 minutes ago.
    assert logged_in_seconds(floor.events, "b1", start, end) == Decimal(
        int((end - floor.at["b1 available"]).total_seconds())
    )


class Listener:
    """An open stream read by a thread: each event as (received, name, id, body)."""

    def __init__(self, pipeline: Pipeline, key: str, params: dict[str, Any], **headers: str):
        self.events: queue.Queue[tuple[float, str, str, Any]] = queue.Queue()
        self.stop = threading.Event()
        self.status: int | None = None
        url = f"{str(pipeline.api.base_url).rstrip('/')}/v1/stream"
        self.thread = threading.Thread(
            target=self._run, args=(url, params, {**bearer(key), **headers}), daemon=True
        )
        self.thread.start()

    def _run(self, url: str, params: dict[str, Any], headers: dict[str, str]) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=30)) as client,
            client.stream("GET", url, params=params, headers=headers) as response,
        ):
            self.status = response.status_code
            name, event_id = "", ""
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("id: "):
                    event_id = line.removeprefix("id: ")
                elif line.startswith("data: "):
                    body = json.loads(line.removeprefix("data: "))
                    self.events.put((time.time(), name, event_id, body))

    def collect(self, seconds: float) -> list[tuple[float, str, str, Any]]:
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.events.get(timeout=left))
            except queue.Empty:
                break
        return out

    def next(self, name: str, seconds: float = 10) -> tuple[float, str, str, Any]:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event[1] == name:
                return event
        raise AssertionError(f"no {name} event in {seconds} s")

    def close(self) -> None:
        self.stop.set()


def sale(order: str, agent: str, team: str, amount: str) -> dict[str, Any]:
    return {
        "event_id": f"sale-{order}",
        "type": "sale.closed",
        "occurred_at": datetime.now(UTC).isoformat(),
        "agent_id": agent,
        "team_id": team,
        "campaign_id": "k2",
        "lead_id": f"L-{order}",
        "order_id": order,
        "amount": amount,
    }


def test_sales_pushed_once_and_only_to_their_teams(board: tuple[Pipeline, Floor]) -> None:
    pipeline, _ = board
    full = create_key(pipeline, ADMIN_KEY, name="all", scopes=["read"])["key"]
    t1 = create_key(pipeline, ADMIN_KEY, name="t1", scopes=["read"], team_ids=["T1"])["key"]
    views = {"views": "sale,status"}
    everyone, team_one = Listener(pipeline, full, views), Listener(pipeline, t1, views)
    try:
        for listener in (everyone, team_one):
            listener.next("status")
        # o-b1 was counted before the streams opened: not news to them.
        pipeline.post([sale("o-new-1", "b1", "T1", "88.80"), sale("o-new-2", "b4", "T2", "5")])
        first = everyone.next("sale")
        second = everyone.next("sale")
        pushed = {e[3]["data"]["order_id"]: e for e in (first, second)}
        assert set(pushed) == {"o-new-1", "o-new-2"}
        body = pushed["o-new-1"][3]["data"]
        assert body == {
            "order_id": "o-new-1",
            "agent_id": "b1",
            "team_id": "T1",
            "campaign_id": "k2",
            "amount": "88.80",
            "occurred_at": body["occurred_at"],
        }
        assert pushed["o-new-2"][3]["data"]["amount"] == "5.00"
        received, _, _, envelope = pushed["o-new-1"]
        committed = datetime.fromisoformat(envelope["as_of"]["commit_at"]).timestamp()
        assert received - committed < 1.0, f"pushed {received - committed:.3f} s after commit"
        mine = team_one.next("sale")
        assert mine[3]["data"]["order_id"] == "o-new-1"
        later = team_one.collect(6)
        assert [e for e in later if e[1] == "sale"] == []
        # The same sale posted again (a retry, a replay) is not news either.
        pipeline.post([sale("o-new-1", "b1", "T1", "88.80")])
        pipeline.wait_caught_up()
        assert [e for e in everyone.collect(3) if e[1] == "sale"] == []
        last_id = max(pushed[o][2] for o in pushed)
    finally:
        everyone.close()
        team_one.close()
    # Reconnecting, with the id of the last event or without it, sends no sale again.
    resumed = Listener(pipeline, full, views, **{"Last-Event-ID": last_id})
    fresh = Listener(pipeline, full, views)
    try:
        resumed.next("status")
        fresh.next("status")
        pipeline.post([sale("o-new-3", "b2", "T1", "1")])
        for listener in (resumed, fresh):
            got = listener.next("sale")
            assert got[3]["data"]["order_id"] == "o-new-3"
            assert [e for e in listener.collect(3) if e[1] == "sale"] == []
    finally:
        resumed.close()
        fresh.close()
    # Resuming from the moment o-new-1 was made (since): the three sales counted after it.
    since = Listener(
        pipeline, full, {**views, "since": pushed["o-new-1"][3]["data"]["occurred_at"]}
    )
    try:
        orders = sorted(e[3]["data"]["order_id"] for e in since.collect(4) if e[1] == "sale")
        assert orders == ["o-new-1", "o-new-2", "o-new-3"]
    finally:
        since.close()


def test_agents_on_the_stream(board: tuple[Pipeline, Floor]) -> None:
    pipeline, _ = board
    t2 = create_key(pipeline, ADMIN_KEY, name="t2", scopes=["read"], team_ids=["T2"])["key"]
    listener = Listener(pipeline, t2, {"views": "agents"})
    try:
        first = listener.next("agents")
        agents = first[3]["data"]["agents"]
        assert [a["agent_id"] for a in agents] == ["b3", "b4"]
        # b4 goes paused for training: pushed within a second of the commit.
        pipeline.post(
            [state("st-b4-2", "b4", "T2", datetime.now(UTC), "paused", reason="training")]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            received, _, _, body = listener.next("agents")
            b4 = next(a for a in body["data"]["agents"] if a["agent_id"] == "b4")
            if b4["state"] == "paused":
                break
        assert (b4["state"], b4["reason"]) == ("paused", "training")
        committed = datetime.fromisoformat(body["as_of"]["commit_at"]).timestamp()
        assert received - committed < 1.0
        # And again within 5 s without any commit, the timers moved on.
        again = listener.next("agents", seconds=6)
        assert again[3]["data"]["as_of"] > body["data"]["as_of"]
    finally:
        listener.close()


def test_pace_by_hour_with_the_targets_that_apply(board: tuple[Pipeline, Floor]) -> None:
    pipeline, floor = board
    admin = bearer(ADMIN_KEY)
    local_now = floor.now.astimezone(ZONE)
    today = local_now.date()
    yesterday_sale = floor.now - timedelta(days=1)
    pipeline.post(
        [
            {**sale("o-y", "b2", "T1", "300"), "occurred_at": yesterday_sale.isoformat()},
            sale("o-t2", "b4", "T2", "50"),
        ]
    )
    pipeline.wait_caught_up()
    # T1 works every day 09:00-21:00: 12 hours a day, 84 a week.
    calendar = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "day_start": "09:00", "day_end": "21:00"}
    assert pipeline.api.put("/v1/working-calendars/T1", json=calendar, headers=admin).is_success
    monday = today - timedelta(days=today.weekday())
    for kpi, period, start, value in (
        ("sales", "day", today, "24"),  # 2 an hour
        ("revenue", "week", monday, "8400"),  # 100 an hour
        ("revenue", "month", today.replace(day=1), "999999"),  # the week's applies
    ):
        created = pipeline.api.post(
            "/v1/targets",
            json={
                "scope": "team",
                "scope_id": "T1",
                "kpi": kpi,
                "period": period,
                "period_start": start.isoformat(),
                "value": value,
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
    t1 = create_key(pipeline, ADMIN_KEY, name="t1", scopes=["read"], team_ids=["T1"])["key"]
    response = pipeline.api.get("/v1/pace/hourly", headers=bearer(t1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["date"], body["timezone"]) == (today.isoformat(), TIMEZONE)
    assert body["target"] == {"sales": 24.0, "revenue": "1200.00"}
    hours = body["hours"]
    assert [h["hour"] for h in hours] == list(range(24))
    working = range(9, 21)
    assert [h["needed_sales"] for h in hours] == [2.0 if h in working else 0.0 for h in range(24)]
    assert [h["needed_revenue"] for h in hours] == [
        "100.00" if h in working else "0.00" for h in range(24)
    ]
    # T1's sales: o-b1 (1234.50, 8 minutes ago) today if after midnight, o-y yesterday.
    sold = floor.at["b1 sale"].astimezone(ZONE)
    expected_today = {sold.hour: (1, "1234.50")} if sold.date() == today else {}
    expected_yesterday = {yesterday_sale.astimezone(ZONE).hour: (1, "300.00")}
    if sold.date() != today:
        expected_yesterday[sold.hour] = (1, "1234.50")
    for hour in hours:
        assert (hour["sales"], hour["revenue"]) == expected_today.get(hour["hour"], (0, "0.00"))
        assert (hour["yesterday_sales"], hour["yesterday_revenue"]) == expected_yesterday.get(
            hour["hour"], (0, "0.00")
        ), hour
    # The whole floor has no target: no pace, but every team's sales.
    full = create_key(pipeline, ADMIN_KEY, name="all", scopes=["read"])["key"]
    floor_body = pipeline.api.get("/v1/pace/hourly", headers=bearer(full)).json()
    assert floor_body["target"] == {"sales": None, "revenue": None}
    assert all(h["needed_sales"] is None for h in floor_body["hours"])
    assert sum(h["sales"] for h in floor_body["hours"]) == sum(h["sales"] for h in hours) + 1
    refused = pipeline.api.get("/v1/pace/hourly", params={"team_id": "T2"}, headers=bearer(t1))
    assert refused.status_code == 403
    # On the stream, the same body.
    listener = Listener(pipeline, t1, {"views": "pace"})
    try:
        streamed = listener.next("pace")[3]["data"]
        assert streamed == body
    finally:
        listener.close()
