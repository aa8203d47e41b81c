"""What a read key limited to a team can learn, through the real pipeline.

Zone Asia/Shanghai, November 2026, a key limited to t-1 (``lead``) and one that reads every
team (``board``):

  agent  records                                                     roster team at the end
  a-1    t-1: 4 calls (2 answered) 4 Nov, sale 2 000.00 5 Nov;       t-1
         October: sale 1 000.00
  a-2    t-2: sale 4 444.44 3 Nov; then one t-1 call 6 Nov           t-1
  a-3    t-2: sale 8 888.88 4 Nov; then agent.state_changed naming   t-1
         t-1 on 7 Nov, and nothing else in t-1
  a-4    t-1: 3 calls 2 Nov; then a t-2 call 9 Nov (moved)            t-2
  a-5    t-2: 6 calls (3 answered) 4 Nov, sale 3 000.00 5 Nov;        t-2
         October: sale 6 000.00
  a-6    10 Nov: logged in for t-1 10:00–11:00, then for t-2 until    t-2
         12:00

So t-1's own records hold, in November, revenue 2 000.00 (a-1's) and 8 dials (a-1 4,
a-4 3, a-2 1); in October 1 000.00. The t-2 sales (4 444.44, 8 888.88, 3 000.00, 6 000.00)
must never reach the t-1 key, however the roster moved, and nothing the key is told may
name t-2.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.pipeline import Pipeline, StartFloor, bearer

pytestmark = pytest.mark.timeout(600)

ADMIN = "bootstrap-admin-key-for-team-keys-0123456789"
NOVEMBER = {"from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}
AS_OF = "2026-11-30T20:00:00+08:00"
MONTH = {"period": "month", "period_start": "2026-11-01", "as_of": AS_OF}
# Every figure of t-2's records, as the API writes money.
T2_FIGURES = ("4444.44", "8888.88", "3000.00", "6000.00", "13333.32", "16333.32")


def _call(event_id: str, agent: str, team: str, at: str, answered: bool = False) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "call.completed",
        "occurred_at": at,
        "agent_id": agent,
        "team_id": team,
        "call_id": f"c-{event_id}",
        "lead_id": f"L-{event_id}",
        "direction": "outbound",
        "answered": answered,
        "contact_reached": answered,
        "talk_seconds": 90 if answered else 0,
    }


def _sale(event_id: str, agent: str, team: str, at: str, amount: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "sale.closed",
        "occurred_at": at,
        "agent_id": agent,
        "team_id": team,
        "lead_id": f"L-{event_id}",
        "order_id": f"o-{event_id}",
        "amount": amount,
    }


def _floor() -> list[dict[str, Any]]:
    events = [
        _sale("a1-oct", "a-1", "t-1", "2026-10-12T15:00:00+08:00", "1000.00"),
        _sale("a5-oct", "a-5", "t-2", "2026-10-13T15:00:00+08:00", "6000.00"),
    ]
    events += [
        _call(f"a1-{i}", "a-1", "t-1", f"2026-11-04T10:0{i}:00+08:00", i < 2) for i in range(4)
    ]
    events.append(_sale("a1-sale", "a-1", "t-1", "2026-11-05T15:00:00+08:00", "2000.00"))
    events.append(_sale("a2-sale", "a-2", "t-2", "2026-11-03T15:00:00+08:00", "4444.44"))
    events.append(_call("a2-t1", "a-2", "t-1", "2026-11-06T10:00:00+08:00"))
    events.append(_sale("a3-sale", "a-3", "t-2", "2026-11-04T15:00:00+08:00", "8888.88"))
    events.append(
        {
            "event_id": "a3-moved",
            "type": "agent.state_changed",
            "occurred_at": "2026-11-07T09:00:00+08:00",
            "agent_id": "a-3",
            "team_id": "t-1",
            "state": "available",
        }
    )
    events += [_call(f"a4-{i}", "a-4", "t-1", f"2026-11-02T10:0{i}:00+08:00") for i in range(3)]
    events.append(_call("a4-t2", "a-4", "t-2", "2026-11-09T10:00:00+08:00"))
    events += [
        _call(f"a5-{i}", "a-5", "t-2", f"2026-11-04T11:0{i}:00+08:00", i < 3) for i in range(6)
    ]
    events.append(_sale("a5-sale", "a-5", "t-2", "2026-11-05T16:00:00+08:00", "3000.00"))
    # a-6 logs in for t-1 at 10:00, switches to t-2 at 11:00 and logs out at 12:00.
    for minute, (team, state) in enumerate(
        (("t-1", "available"), ("t-2", "available"), ("t-2", "logged_out"))
    ):
        events.append(
            {
                "event_id": f"a6-state-{minute}",
                "type": "agent.state_changed",
                "occurred_at": f"2026-11-10T{10 + minute}:00:00+08:00",
                "agent_id": "a-6",
                "team_id": team,
                "state": state,
            }
        )
    return events


class Floor:
    def __init__(self, pipeline: Pipeline) -> None:
        self.api = pipeline.api
        self.lead = self._key(name="lead t-1", scopes=["read"], team_ids=["t-1"])
        self.board = self._key(name="wallboard", scopes=["read"])
        self.targets: dict[str, int] = {}
        for scope, scope_id, value in (
            ("agent", "a-1", "10000"),
            ("agent", "a-2", "10000"),
            ("agent", "a-3", "10000"),
            ("agent", "a-5", "10000"),
            ("team", "t-1", "20000"),
            ("team", "t-2", "20000"),
        ):
            response = self.api.post(
                "/v1/targets",
                json={
                    "scope": scope,
                    "scope_id": scope_id,
                    "kpi": "revenue",
                    "period": "month",
                    "period_start": "2026-11-01",
                    "value": value,
                },
                headers=bearer(ADMIN),
            )
            assert response.status_code == 201, response.text
            self.targets[scope_id] = response.json()["target_id"]
        calendar = {"weekdays": [1, 2, 3, 4, 5], "day_start": "09:00", "day_end": "18:00"}
        for team in ("t-1", "t-2", "*"):
            response = self.api.put(
                f"/v1/working-calendars/{team}", json=calendar, headers=bearer(ADMIN)
            )
            assert response.status_code == 200, response.text

    def _key(self, **body: Any) -> str:
        response = self.api.post("/v1/admin/keys", json=body, headers=bearer(ADMIN))
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    def get(self, key: str, path: str, **params: Any) -> httpx.Response:
        return self.api.get(path, params=params, headers=bearer(key))

    def ok(self, key: str, path: str, **params: Any) -> httpx.Response:
        response = self.get(key, path, **params)
        assert response.status_code == 200, (path, response.text)
        return response


@pytest.fixture(scope="module")
def floor(start_floor: StartFloor) -> Iterator[Floor]:
    with start_floor(
        "team-keys", CALLBOARD_ADMIN_KEY=ADMIN, CALLBOARD_AUTH_CACHE_SECONDS="0.3"
    ) as running:
        running.post(_floor())
        running.wait_caught_up()
        yield Floor(running)


def _no_t2(text: str) -> None:
    """Nothing of t-2's: neither its id nor any of its figures."""
    assert "t-2" not in text, text
    for figure in T2_FIGURES:
        assert figure not in text, (figure, text)


def _pacing_actuals(body: dict[str, Any]) -> dict[str, str]:
    return {row["scope_id"]: row["pacing"]["actual"] for row in body["targets"]}


def _shape(response: httpx.Response, asked: str | None = None) -> tuple[int, str]:
    """Status and body, with the id the caller itself sent (``asked``, or numbers) taken out."""
    text = response.text if asked is None else response.text.replace(asked, "ID")
    return response.status_code, re.sub(r"\b\d+\b", "N", text)


def test_agent_views_count_only_the_keys_teams_records(floor: Floor) -> None:
    """Item 3: an agent's t-2 sale stays out of every t-1 answer, whatever the roster says."""
    # The figures are there for a key that reads every team: the checks below can fail.
    every = floor.ok(floor.board, "/v1/pacing", as_of=AS_OF).json()
    assert _pacing_actuals(every) == {
        "a-1": "2000.00",
        "a-2": "4444.44",
        "a-3": "8888.88",
        "a-5": "3000.00",
        "t-1": "2000.00",
        "t-2": "16333.32",
    }

    # The driver model of a-2: one t-1 call and no revenue, as the t-1 key sees it.
    drivers = floor.ok(
        floor.lead, "/v1/drivers", agent_id="a-2", reference="previous_period", **NOVEMBER
    )
    _no_t2(drivers.text)
    assert {d["driver"]: d["value"] for d in drivers.json()["drivers"]}["leads_dialed"] == 1
    assert drivers.json()["result"] in (None, "0.00")

    # a-3 has no call, quote or sale in t-1: answered as an agent that does not exist.
    moved = floor.get(
        floor.lead, "/v1/drivers", agent_id="a-3", reference="previous_period", **NOVEMBER
    )
    nobody = floor.get(
        floor.lead, "/v1/drivers", agent_id="a-nobody", reference="previous_period", **NOVEMBER
    )
    _no_t2(moved.text)
    assert _shape(moved, "a-3") == _shape(nobody, "a-nobody")
    assert not any(d["value"] for d in moved.json()["drivers"])

    # Time logged in: a-6's hour for t-1, not the hour after it switched to t-2.
    day = {"from": "2026-11-10T00:00:00+08:00", "to": "2026-11-11T00:00:00+08:00"}
    logged = {"agent_id": "a-6", "metrics": "logged_in_seconds", **day}
    assert floor.ok(floor.board, "/v1/metrics", **logged).json()["rows"][0] == {
        "logged_in_seconds": 7200
    }
    assert floor.ok(floor.lead, "/v1/metrics", **logged).json()["rows"][0] == {
        "logged_in_seconds": 3600
    }

    # Each agent target: pacing, the backward plan and the diagnosis.
    for agent, actual in (("a-1", "2000.00"), ("a-2", "0.00"), ("a-3", "0.00")):
        target = floor.targets[agent]
        pacing = floor.ok(floor.lead, f"/v1/targets/{target}/pacing", as_of=AS_OF)
        _no_t2(pacing.text)
        assert pacing.json()["pacing"]["actual"] == actual
        plan = floor.ok(floor.lead, f"/v1/targets/{target}/plan", as_of=AS_OF)
        _no_t2(plan.text)
        results = [w["actual"]["result"] for w in plan.json()["weeks"] if w["actual"]]
        assert sum(float(r) for r in results) == float(actual)
        diagnosis = floor.ok(floor.lead, f"/v1/targets/{target}/diagnosis", as_of=AS_OF)
        _no_t2(diagnosis.text)
        assert diagnosis.json()["pacing"]["actual"] == actual

    # Every target's pacing, the attainment ranking and the scorecards (JSON and CSV).
    pacing_all = floor.ok(floor.lead, "/v1/pacing", as_of=AS_OF)
    _no_t2(pacing_all.text)
    assert _pacing_actuals(pacing_all.json()) == {
        "a-1": "2000.00",
        "a-2": "0.00",
        "a-3": "0.00",
        "t-1": "2000.00",
    }
    attainment = floor.ok(floor.lead, "/v1/leaderboard/attainment", kpi="revenue", **MONTH)
    _no_t2(attainment.text)
    assert [(r["agent_id"], r["actual"], r["team_id"]) for r in attainment.json()["rows"]] == [
        ("a-1", "2000.00", "t-1"),
        ("a-2", "0.00", "t-1"),
        ("a-3", "0.00", "t-1"),
    ]
    cards = floor.ok(floor.lead, "/v1/scorecards", weights="revenue:1", **MONTH)
    _no_t2(cards.text)
    assert {r["agent_id"]: r["kpis"][0]["actual"] for r in cards.json()["rows"]} == {
        "a-1": "2000.00",
        "a-2": "0.00",
        "a-3": "0.00",
    }
    csv_cards = floor.ok(floor.lead, "/v1/scorecards", weights="revenue:1", format="csv", **MONTH)
    _no_t2(csv_cards.text)
    assert csv_cards.text.splitlines()[1:] == [
        "a-1,t-1,2000.00,10000.00,0.2,1.0,0.2,1",
        "a-2,t-1,0.00,10000.00,0.0,1.0,0.0,2",
        "a-3,t-1,0.00,10000.00,0.0,1.0,0.0,2",
    ]
    team_cards = floor.ok(floor.lead, "/v1/scorecards", weights="revenue:1", scope="team", **MONTH)
    assert [(r["team_id"], r["kpis"][0]["actual"]) for r in team_cards.json()["rows"]] == [
        ("t-1", "2000.00")
    ]


def test_a_teams_peers_are_the_keys_teams(floor: Floor) -> None:
    """Item 4: the diagnosis and the driver model of t-1 compare t-1 with the key's teams."""
    # For a key that reads every team, t-2 is a peer (the check below can fail).
    every = floor.ok(floor.board, f"/v1/targets/{floor.targets['t-1']}/diagnosis", as_of=AS_OF)
    assert every.json()["history"]["peer_best"]["team_id"] == "t-2"

    diagnosis = floor.ok(floor.lead, f"/v1/targets/{floor.targets['t-1']}/diagnosis", as_of=AS_OF)
    _no_t2(diagnosis.text)
    history = diagnosis.json()["history"]
    assert history["own_best"] == {"value": "1000.00", "period_start": "2026-10-01"}
    assert history["peer_best"] == {
        "value": "1000.00",
        "period_start": "2026-10-01",
        "team_id": "t-1",
    }
    assert diagnosis.json()["drivers"]["reference"] == "median team of 1"

    drivers = floor.ok(
        floor.lead, "/v1/drivers", team_id="t-1", reference="team_median", **NOVEMBER
    )
    _no_t2(drivers.text)
    body = drivers.json()
    assert body["reference"] == {"kind": "team_median", "teams": 1}
    # The median of one team is that team.
    assert [d["reference"] for d in body["drivers"]] == [d["value"] for d in body["drivers"]]
    assert body["result"] == body["reference_result"]


def test_not_yours_answers_as_does_not_exist(floor: Floor) -> None:
    """Item 6: refusals and listings tell a t-1 key nothing about t-2."""
    # Another team's numbers: the same 403 as a team that does not exist, naming neither.
    other = floor.get(floor.lead, "/v1/metrics", team_id="t-2", **NOVEMBER)
    unknown = floor.get(floor.lead, "/v1/metrics", team_id="t-404", **NOVEMBER)
    assert other.status_code == unknown.status_code == 403
    assert other.json() == unknown.json()
    _no_t2(other.text)

    # An agent of t-2 only: as one that does not exist.
    params = {"reference": "previous_period", **NOVEMBER}
    theirs = floor.get(floor.lead, "/v1/drivers", agent_id="a-5", **params)
    nobody = floor.get(floor.lead, "/v1/drivers", agent_id="a-404", **params)
    _no_t2(theirs.text)
    assert _shape(theirs, "a-5") == _shape(nobody, "a-404")
    theirs = floor.get(floor.lead, "/v1/leaderboard/agents/a-5", metric="dials", **NOVEMBER)
    nobody = floor.get(floor.lead, "/v1/leaderboard/agents/a-404", metric="dials", **NOVEMBER)
    assert theirs.status_code == 404, theirs.text
    _no_t2(theirs.text)
    assert _shape(theirs, "a-5") == _shape(nobody, "a-404")

    # Another team's targets, and an agent's of that team: as a target that does not exist.
    missing = floor.get(floor.lead, "/v1/targets/999999")
    assert missing.status_code == 404
    for owner in ("t-2", "a-5"):
        target = floor.targets[owner]
        for path in ("", "/history", "/pacing", "/plan", "/diagnosis"):
            theirs = floor.get(floor.lead, f"/v1/targets/{target}{path}", as_of=AS_OF)
            nothing = floor.get(floor.lead, f"/v1/targets/999999{path}", as_of=AS_OF)
            assert _shape(theirs) == _shape(nothing) == _shape(missing), theirs.text
            _no_t2(theirs.text)
    listed = floor.ok(floor.lead, "/v1/targets")
    assert sorted(t["scope_id"] for t in listed.json()["targets"]) == ["a-1", "a-2", "a-3", "t-1"]

    # a-4 moved to t-2 after three t-1 calls: t-1's leaderboard shows it as t-1's.
    board = floor.ok(floor.lead, "/v1/leaderboard", metric="dials", min_volume=0, **NOVEMBER)
    assert [(r["agent_id"], r["value"], r["team_id"]) for r in board.json()["rows"]] == [
        ("a-1", 4, "t-1"),
        ("a-4", 3, "t-1"),
        ("a-2", 1, "t-1"),
    ]
    own_rank = floor.ok(floor.lead, "/v1/leaderboard/agents/a-4", metric="dials", **NOVEMBER)
    assert own_rank.json()["agent"]["team_id"] == "t-1"
    _no_t2(own_rank.text)

    # Working calendars: the key's teams and the default only.
    calendars = floor.ok(floor.lead, "/v1/working-calendars").json()
    assert sorted(calendars["teams"]) == ["*", "t-1"]
    assert sorted(floor.ok(floor.board, "/v1/working-calendars").json()["teams"]) == [
        "*",
        "t-1",
        "t-2",
    ]
