"""Contests (竞赛) through the real pipeline, on a generated floor.

Zone Asia/Shanghai. Three teams (t-0, t-1, t-2) of four agents each work Monday 16 November
2026 from 07:00 to 21:00; the contests that have ended run from 10:00 to 18:00. Inside that
window each agent makes 6, 10 or 20 outbound calls at one of three connect rates (so that
agents tie on connect_rate, and some fall below the minimum volume of 10 dials), and closes
a few sales, some exactly on the window's edges; outside it, every call connects and every
sale is large, so that counting anything outside the window would change the standings.

The truth is computed here from the generated calls and sales, with exact fractions and a
ranking written for the test (ties share a rank: 1, 2, 2, 4); it shares no code with the
API.

Over 500 lines as one module: every test reads the one generated floor and its truth.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import create_engine

from services.api.contests.service import contest_standings
from services.api.settings import ApiSettings
from tests.pipeline import Pipeline, StartFloor, bearer

pytestmark = pytest.mark.timeout(600)

ADMIN = "bootstrap-admin-key-for-contests-0123456789"
ZONE = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 16, tzinfo=ZONE)
START = DAY.replace(hour=10)
END = DAY.replace(hour=18)
TEAMS = ("t-0", "t-1", "t-2")
MIN_VOLUME = 10


@dataclass
class GeneratedFloor:
    # (agent, team, start, answered)
    calls: list[tuple[str, str, datetime, bool]] = field(default_factory=list)
    # (agent, team, at, amount)
    sales: list[tuple[str, str, datetime, Decimal]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def generate(seed: int) -> GeneratedFloor:
    rng = random.Random(seed)
    floor = GeneratedFloor()
    seq = 0
    window_seconds = int((END - START).total_seconds())

    def add_call(agent: str, team: str, at: datetime, answered: bool) -> None:
        nonlocal seq
        seq += 1
        floor.calls.append((agent, team, at, answered))
        floor.events.append(
            {
                "event_id": f"call-{seq}",
                "type": "call.completed",
                "occurred_at": at.isoformat(),
                "agent_id": agent,
                "team_id": team,
                "call_id": f"c-{seq}",
                "lead_id": f"L-{seq % 97}",
                "direction": "outbound",
                "answered": answered,
                "contact_reached": answered,
                "talk_seconds": 90 if answered else 0,
            }
        )

    def add_sale(agent: str, team: str, at: datetime, amount: Decimal) -> None:
        nonlocal seq
        seq += 1
        floor.sales.append((agent, team, at, amount))
        floor.events.append(
            {
                "event_id": f"sale-{seq}",
                "type": "sale.closed",
                "occurred_at": at.isoformat(),
                "agent_id": agent,
                "team_id": team,
                "lead_id": f"L-{seq % 97}",
                "order_id": f"o-{seq}",
                "amount": str(amount),
            }
        )

    edges_in = (START, END - timedelta(seconds=1))
    edges_out = (START - timedelta(seconds=1), END)
    for team in TEAMS:
        for i in range(4):
            agent = f"a-{team[-1]}-{i}"
            dials = rng.choice((6, 10, 20))
            rate = rng.choice((Fraction(1, 2), Fraction(3, 10), Fraction(4, 5)))
            connects = int(dials * rate)
            for n in range(dials):
                at = START + timedelta(seconds=rng.randrange(window_seconds))
                if n < 2:
                    at = edges_in[n]
                add_call(agent, team, at, n < connects)
            for n in range(rng.randint(4, 8)):
                # Outside the window every call connects: counted, it would lift the rate.
                before = DAY.replace(hour=7) + timedelta(seconds=rng.randrange(3 * 3600))
                after = END + timedelta(seconds=rng.randrange(3 * 3600))
                add_call(agent, team, edges_out[n] if n < 2 else rng.choice((before, after)), True)
            for n in range(rng.randint(0, 3)):
                at = START + timedelta(seconds=rng.randrange(window_seconds))
                if n == 0 and rng.random() < 0.5:
                    at = rng.choice(edges_in)
                add_sale(agent, team, at, Decimal(rng.randrange(10_000, 300_000)) / 100)
            # Outside the window: large sales, on the edges and around them.
            add_sale(agent, team, rng.choice(edges_out), Decimal(rng.randrange(500_000, 900_000)))
    rng.shuffle(floor.events)
    return floor


def competition_ranks(values: dict[str, Any]) -> dict[str, int]:
    """1 + the number of competitors strictly better: ties share a rank, the next skips."""
    return {k: 1 + sum(1 for other in values.values() if other > v) for k, v in values.items()}


def truth(
    floor: GeneratedFloor,
    kpi: str,
    teams: tuple[str, ...],
    *,
    by: str = "agent",
    start: datetime = START,
    end: datetime = END,
    min_volume: int = 0,
) -> dict[str, tuple[int, Any]]:
    """Competitor → (rank, value) from the generated floor."""
    dials: dict[str, int] = defaultdict(int)
    connects: dict[str, int] = defaultdict(int)
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    sales: dict[str, int] = defaultdict(int)
    for agent, team, at, answered in floor.calls:
        if team in teams and start <= at < end:
            who = agent if by == "agent" else team
            dials[who] += 1
            connects[who] += answered
    for agent, team, at, amount in floor.sales:
        if team in teams and start <= at < end:
            who = agent if by == "agent" else team
            revenue[who] += amount
            sales[who] += 1
    values: dict[str, Any]
    if kpi == "connect_rate":
        values = {a: Fraction(connects[a], n) for a, n in dials.items() if n >= min_volume}
    else:
        # Whoever worked in the window is ranked, at 0 without a sale (as the leaderboard).
        counted = revenue if kpi == "revenue" else sales
        values = {who: counted[who] for who in {*dials, *revenue}}
    ranks = competition_ranks(values)
    return {k: (ranks[k], values[k]) for k in values}


class Floor:
    def __init__(self, pipeline: Pipeline, generated: GeneratedFloor) -> None:
        self.pipeline = pipeline
        self.api = pipeline.api
        self.generated = generated
        self.board = self.key(name="wallboard", scopes=["read"])
        self.lead0 = self.key(name="lead t-0", scopes=["read"], team_ids=["t-0"])
        self.contests: dict[str, int] = {}
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
        ended = {"starts_at": START.isoformat(), "ends_at": END.isoformat()}
        bodies: dict[str, dict[str, Any]] = {
            "revenue": {"kpi": "revenue", "scope": "agents", "team_ids": ["t-0", "t-1"]},
            "connect_rate": {
                "kpi": "connect_rate",
                "scope": "agents",
                "team_ids": ["t-0", "t-1", "t-2"],
                "min_volume": MIN_VOLUME,
            },
            "sales": {"kpi": "sales", "scope": "agents", "team_ids": ["t-0", "t-1", "t-2"]},
            "teams": {"kpi": "revenue", "scope": "teams", "team_ids": ["t-0", "t-1", "t-2"]},
            "t2_only": {"kpi": "sales", "scope": "agents", "team_ids": ["t-2"]},
            "running": {
                "kpi": "revenue",
                "scope": "agents",
                "team_ids": ["t-0", "t-2"],
                "starts_at": START.isoformat(),
                "ends_at": tomorrow.isoformat(),
            },
            "scheduled": {
                "kpi": "sales",
                "scope": "teams",
                "team_ids": ["t-0", "t-1"],
                "starts_at": tomorrow.isoformat(),
                "ends_at": (tomorrow + timedelta(days=7)).isoformat(),
            },
        }
        for name, body in bodies.items():
            response = self.api.post(
                "/v1/contests",
                json={"name": f"{name} 竞赛", "prize": "一等奖: 带薪假一天", **ended, **body},
                headers=bearer(ADMIN),
            )
            assert response.status_code == 201, response.text
            self.contests[name] = response.json()["contest_id"]

    def key(self, **body: Any) -> str:
        response = self.api.post("/v1/admin/keys", json=body, headers=bearer(ADMIN))
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    def contest(self, name: str, key: str | None = None) -> dict[str, Any]:
        response = self.api.get(
            f"/v1/contests/{self.contests[name]}", headers=bearer(key or self.board)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def floor(start_floor: StartFloor) -> Iterator[Floor]:
    generated = generate(seed=14)
    with start_floor(
        "contests", CALLBOARD_ADMIN_KEY=ADMIN, CALLBOARD_AUTH_CACHE_SECONDS="0.3"
    ) as running:
        running.post(generated.events)
        running.wait_caught_up()
        yield Floor(running, generated)


def _standings(body: dict[str, Any], by: str = "agent") -> dict[str, tuple[int, Any]]:
    return {row[f"{by}_id"]: (row["rank"], row["value"]) for row in body["standings"]}


def _assert_matches(
    body: dict[str, Any], expected: dict[str, tuple[int, Any]], by: str = "agent"
) -> None:
    got = _standings(body, by)
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for competitor, (rank, value) in expected.items():
        got_rank, got_value = got[competitor]
        assert got_rank == rank, (competitor, got[competitor], expected[competitor])
        if isinstance(value, Fraction):
            assert abs(Fraction(str(got_value)) - value) < Fraction(1, 10**6), competitor
        elif isinstance(value, Decimal):
            assert Decimal(got_value) == value, (competitor, got_value, value)
        else:
            assert got_value == value, (competitor, got_value, value)
    ranks = [row["rank"] for row in body["standings"]]
    assert ranks == sorted(ranks)


def test_revenue_contest_of_agents_matches_the_truth(floor: Floor) -> None:
    body = floor.contest("revenue")
    expected = truth(floor.generated, "revenue", ("t-0", "t-1"))
    assert len(expected) >= 5  # the floor gives most agents a sale in the window
    _assert_matches(body, expected)
    assert body["status"] == "ended"
    assert body["team_ids"] == ["t-0", "t-1"]
    assert body["starts_at"] == "2026-11-16T10:00:00+08:00"
    assert body["prize"] == "一等奖: 带薪假一天"
    best = max(v for _, v in expected.values())
    winners = sorted(a for a, (_, v) in expected.items() if v == best)
    assert sorted(w["agent_id"] for w in body["winners"]) == winners
    assert body["leaders"] == body["winners"]
    for row in body["standings"]:
        assert row["team_id"] == f"t-{row['agent_id'][2]}"


def test_ratio_contest_with_min_volume_and_ties(floor: Floor) -> None:
    body = floor.contest("connect_rate")
    expected = truth(floor.generated, "connect_rate", TEAMS, min_volume=MIN_VOLUME)
    _assert_matches(body, expected)
    assert body["min_volume"] == MIN_VOLUME
    # The floor was generated so that both happen: ties, and agents below the minimum.
    ranks = [rank for rank, _ in expected.values()]
    assert len(ranks) > len(set(ranks)), "no tie on this floor"
    all_agents = truth(floor.generated, "connect_rate", TEAMS)
    assert len(all_agents) == 12 and len(expected) < 12
    for row in body["standings"]:
        assert row["volume"] >= MIN_VOLUME
    # A shared rank skips the next ones (1, 2, 2, 4).
    for rank in set(ranks):
        tied = ranks.count(rank)
        assert all(r <= rank or r >= rank + tied for r in ranks)


def test_count_contest_ties_and_winners(floor: Floor) -> None:
    body = floor.contest("sales")
    expected = truth(floor.generated, "sales", TEAMS)
    _assert_matches(body, expected)
    top = [a for a, (rank, _) in expected.items() if rank == 1]
    assert sorted(w["agent_id"] for w in body["winners"]) == sorted(top)


def test_teams_against_each_other(floor: Floor) -> None:
    body = floor.contest("teams")
    expected = truth(floor.generated, "revenue", TEAMS, by="team")
    _assert_matches(body, expected, by="team")
    assert all("agent_id" not in row or row["agent_id"] is None for row in body["standings"])
    assert len(body["standings"]) == 3


def test_the_same_ranking_as_the_leaderboard(floor: Floor) -> None:
    body = floor.contest("connect_rate")
    response = floor.api.get(
        "/v1/leaderboard",
        params={
            "metric": "connect_rate",
            "from": START.isoformat(),
            "to": END.isoformat(),
            "team_id": list(TEAMS),
            "min_volume": MIN_VOLUME,
        },
        headers=bearer(floor.board),
    )
    assert response.status_code == 200, response.text
    board = [(r["rank"], r["agent_id"], r["value"]) for r in response.json()["rows"]]
    assert board == [(r["rank"], r["agent_id"], r["value"]) for r in body["standings"]]


def test_running_and_scheduled(floor: Floor) -> None:
    now = datetime.now(UTC)
    running = floor.contest("running")
    assert running["status"] == "running"
    assert running["winners"] is None
    expected = truth(floor.generated, "revenue", ("t-0", "t-2"), end=now + timedelta(days=1))
    _assert_matches(running, expected)
    assert running["leaders"] == [r for r in running["standings"] if r["rank"] == 1]
    scheduled = floor.contest("scheduled")
    assert scheduled["status"] == "scheduled"
    assert scheduled["standings"] == [] and scheduled["winners"] is None
    listed = floor.api.get(
        "/v1/contests", params={"status": "running"}, headers=bearer(floor.board)
    )
    assert listed.status_code == 200, listed.text
    assert [c["contest_id"] for c in listed.json()["contests"]] == [floor.contests["running"]]


def test_a_team_limited_key_sees_its_teams_only(floor: Floor) -> None:
    listed = floor.api.get("/v1/contests", headers=bearer(floor.lead0))
    assert listed.status_code == 200, listed.text
    ids = {c["contest_id"] for c in listed.json()["contests"]}
    assert ids == {v for k, v in floor.contests.items() if k != "t2_only"}
    assert "t-1" not in listed.text and "t-2" not in listed.text
    # Another team's contest is the same 404 as one that does not exist.
    for contest_id in (floor.contests["t2_only"], 999_999):
        response = floor.api.get(f"/v1/contests/{contest_id}", headers=bearer(floor.lead0))
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
        assert response.json()["error"]["message"] == f"no contest {contest_id}"
    # Its own teams' competitors only, ranked among themselves.
    body = floor.contest("connect_rate", floor.lead0)
    assert body["team_ids"] == ["t-0"]
    _assert_matches(body, truth(floor.generated, "connect_rate", ("t-0",), min_volume=MIN_VOLUME))
    teams = floor.contest("teams", floor.lead0)
    _assert_matches(teams, truth(floor.generated, "revenue", ("t-0",), by="team"), by="team")
    for name in ("revenue", "connect_rate", "teams", "running"):
        text = json.dumps(floor.contest(name, floor.lead0))
        assert "t-1" not in text and "t-2" not in text, (name, text)
    # Reading is not managing.
    created = floor.api.post(
        "/v1/contests",
        json={
            "name": "x",
            "kpi": "sales",
            "scope": "agents",
            "team_ids": ["t-0"],
            "starts_at": START.isoformat(),
            "ends_at": END.isoformat(),
        },
        headers=bearer(floor.lead0),
    )
    assert created.status_code == 403, created.text
    deleted = floor.api.delete(
        f"/v1/contests/{floor.contests['revenue']}", headers=bearer(floor.lead0)
    )
    assert deleted.status_code == 403, deleted.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ends_at": "2026-11-16T09:00:00+08:00"}, "ends_at"),
        ({"ends_at": "2026-11-16T10:00:00+08:00"}, "ends_at"),
        ({"kpi": "win_rate"}, "kpi"),
        ({"kpi": "dispositions"}, "kpi"),
        ({"name": "x" * 129}, "name"),
        ({"name": ""}, "name"),
        ({"name": "call me 13812345678"}, "name"),
        ({"prize": "ask boss@example.com"}, "prize"),
        ({"prize": "p" * 501}, "prize"),
        ({"name": "bell\x07"}, "name"),
        ({"starts_at": "2026-11-16T10:00:00"}, "starts_at"),
        ({"starts_at": "2026-11-16T10:00:30+08:00"}, "starts_at"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"scope": "teams", "team_ids": ["t-0"]}, "team_ids"),
        ({"scope": "campaigns"}, "scope"),
        ({"team_ids": []}, "team_ids"),
        ({"team_ids": ["t,1"]}, "team_ids"),
        ({"min_volume": -1}, "min_volume"),
        ({"ends_at": "2028-01-01T00:00:00+08:00"}, "ends_at"),
    ],
)
def test_bad_input_is_refused(floor: Floor, change: dict[str, Any], field: str) -> None:
    body = {
        "name": "周冠军",
        "kpi": "sales",
        "scope": "agents",
        "team_ids": ["t-0", "t-1"],
        "starts_at": START.isoformat(),
        "ends_at": END.isoformat(),
        **change,
    }
    response = floor.api.post("/v1/contests", json=body, headers=bearer(ADMIN))
    assert response.status_code == 422, (change, response.text)
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert error["code"] == "invalid_input"
    details = error.get("details") or []
    fields = [d["field"] for d in details] if isinstance(details, list) else []
    named = [f for f in fields if f == field or f.startswith(f"{field}.")]
    assert named or error["message"].startswith(f"{field}="), error


def test_delete(floor: Floor) -> None:
    body = {
        "name": "to delete",
        "kpi": "sales",
        "scope": "agents",
        "team_ids": ["t-1"],
        "starts_at": START.isoformat(),
        "ends_at": END.isoformat(),
    }
    created = floor.api.post("/v1/contests", json=body, headers=bearer(ADMIN))
    assert created.status_code == 201, created.text
    contest_id = created.json()["contest_id"]
    deleted = floor.api.delete(f"/v1/contests/{contest_id}", headers=bearer(ADMIN))
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["name"] == "to delete"
    gone = floor.api.get(f"/v1/contests/{contest_id}", headers=bearer(floor.board))
    assert gone.status_code == 404
    again = floor.api.delete(f"/v1/contests/{contest_id}", headers=bearer(ADMIN))
    assert again.status_code == 404


def test_standings_and_leader_for_announcements(floor: Floor) -> None:
    """What the chat digests call: the standings and leaders without going through HTTP."""
    settings = ApiSettings(
        database_url=floor.pipeline.database_url, timezone="Asia/Shanghai", auth_mode="off"
    )
    engine = create_engine(floor.pipeline.database_url)
    try:
        with engine.connect() as connection:
            found = contest_standings(connection, settings, floor.contests["sales"])
            limited = contest_standings(
                connection, settings, floor.contests["sales"], key_teams=frozenset({"t-1"})
            )
    finally:
        engine.dispose()
    expected = truth(floor.generated, "sales", TEAMS)
    top = sorted(a for a, (rank, _) in expected.items() if rank == 1)
    assert found.status == "ended"
    assert sorted(r["agent_id"] for r in found.leaders) == top
    assert found.winners == found.leaders
    assert {r["agent_id"]: (r["rank"], r["value"]) for r in found.rows} == expected
    only_t1 = truth(floor.generated, "sales", ("t-1",))
    assert {r["agent_id"]: (r["rank"], r["value"]) for r in limited.rows} == only_t1


def _contests_events(
    floor: Floor, key: str, params: dict[str, Any], until: Any, timeout: float = 30
) -> dict[str, Any]:
    """The data of the first ``contests`` event of a stream that ``until`` accepts."""
    url = f"{floor.api.base_url}/v1/stream"
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=timeout)) as client,
        client.stream("GET", url, params=params, headers=bearer(key)) as response,
    ):
        assert response.status_code == 200, response.read()
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name == "contests":
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))["data"]
                if until(data):
                    return data
    raise AssertionError("the stream ended")


def test_standings_on_the_live_stream(floor: Floor) -> None:
    # One contest, whatever its status.
    one = _contests_events(floor, floor.board, {"contest": floor.contests["sales"]}, lambda d: True)
    assert [c["contest_id"] for c in one["contests"]] == [floor.contests["sales"]]
    assert one["contests"][0]["standings"] == floor.contest("sales")["standings"]
    # Another team's contest is refused before the stream starts.
    refused = floor.api.get(
        "/v1/stream",
        params={"contest": floor.contests["t2_only"]},
        headers=bearer(floor.lead0),
    )
    assert refused.status_code == 404, refused.text
    # The running contests, as they change: a sale now puts a-2-3 ahead.
    running = _contests_events(floor, floor.board, {"views": "contests"}, lambda d: True)
    assert [c["contest_id"] for c in running["contests"]] == [floor.contests["running"]]
    assert running["contests"][0]["standings"] == floor.contest("running")["standings"]
    now = datetime.now(UTC).replace(microsecond=0)
    floor.pipeline.post(
        [
            {
                "event_id": "sale-live",
                "type": "sale.closed",
                "occurred_at": now.isoformat(),
                "agent_id": "a-2-3",
                "team_id": "t-2",
                "lead_id": "L-live",
                "order_id": "o-live",
                "amount": "99999999.00",
            }
        ]
    )

    def leader_is_a23(data: dict[str, Any]) -> bool:
        leaders = data["contests"][0]["leaders"]
        return [r["agent_id"] for r in leaders] == ["a-2-3"]

    changed = _contests_events(floor, floor.board, {"views": "contests"}, leader_is_a23)
    assert changed["contests"][0]["status"] == "running"
    # The t-0 key's board shows t-0's agents only, so a-2-3 never appears there.
    limited = _contests_events(floor, floor.lead0, {"views": "contests"}, lambda d: True)
    assert "a-2-3" not in json.dumps(limited)
    assert {r["team_id"] for r in limited["contests"][0]["standings"]} == {"t-0"}
