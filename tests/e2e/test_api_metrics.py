"""The read API on a small floor whose every number is worked out by hand.

Over 500 lines as one module: every test reads the one floor below, and each expected
value is worked out from it in place.

Deployment zone Asia/Shanghai. Day 1 is Monday 2026-11-02, day 2 the Tuesday after.

Day 1
  c1  a1 (names team T1)  L1  outbound, answered by a human, contact, talk 90, wrap 10, SALE
  c2  a1 (no team)        L2  outbound, not answered, NA
  c3  a1 (no team)        L1  outbound, answered, contact, talk 30
  c4  a2 (T2)             L3  outbound, answered by a machine
  c5  a2                  L1  outbound, answered, contact, talk 200
  c8  a3 (T2)             L6  inbound, answered, talk 50, not resolved   (14:00)
  c9  a3                  L6  inbound, answered, talk 50, resolved       (15:00)
  q1  a1 quotes L1; o1 a1 sells L1 1000.50 (margin 100); o2 a2 sells L1 500, cancelled
  o3  a2 sells L3 200 to an existing customer (no margin)
  payments: 400 on o1; 100 on o2 (cancelled: never collected)
  stages: a1 moves L1 to intent, L2 to ready, L7 to acknowledged
  survey on c1: 4
  a1 states: available 09:00, paused 12:00, logged_out 13:00 -> 4 h logged in
Day 2
  c6  a1  L4  outbound, answered, contact, talk 60
  c7  a2  L5  outbound, not answered
Day 0, the Monday before (first-call resolution across agents)
  f1  a4 (T3)  L8   inbound, not answered                    (10:00)
  f2  a5 (T4)  L8   inbound, answered, resolved              (10:30)
  f3  a4       L9   inbound, answered, not resolved          (11:00)
  f4  a5       L9   inbound, answered, resolved              (11:30)
  f5  a5       L10  inbound, answered, resolved              (12:00)
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.floor import call_events
from tests.pipeline import TIMEZONE, Pipeline

ZONE = ZoneInfo(TIMEZONE)
DAY1 = datetime(2026, 11, 2, tzinfo=ZONE)
DAY2 = DAY1 + timedelta(days=1)
DAY0 = DAY1 - timedelta(days=7)


def _at(day: datetime, hour: int, minute: int = 0, second: int = 0) -> str:
    return day.replace(hour=hour, minute=minute, second=second).isoformat()


def _call(
    call_id: str,
    agent: str,
    lead: str,
    at: str,
    *,
    team: str | None = None,
    direction: str = "outbound",
    answered_by: str | None = None,
    contact: bool = True,
    talk: int = 0,
    wrap: int = 0,
    disposition: str | None = None,
    resolved: bool | None = None,
) -> list[dict[str, Any]]:
    return call_events(
        call_id,
        datetime.fromisoformat(at),
        lead=lead,
        agent=agent,
        team=team,
        direction=direction,
        answered_by=answered_by,
        contact=contact,
        talk=talk,
        wrap=wrap,
        resolved=resolved,
        codes=(disposition,) if disposition else (),
    )


def _floor() -> list[dict[str, Any]]:
    events = [
        *_call(
            "c1",
            "a1",
            "L1",
            _at(DAY1, 9, 0, 10),
            team="T1",
            answered_by="human",
            talk=90,
            wrap=10,
            disposition="SALE",
        ),
        *_call("c2", "a1", "L2", _at(DAY1, 9, 5), disposition="NA"),
        *_call("c3", "a1", "L1", _at(DAY1, 10, 0), answered_by="human", talk=30),
        *_call("c4", "a2", "L3", _at(DAY1, 9, 30), team="T2", answered_by="machine"),
        *_call("c5", "a2", "L1", _at(DAY1, 11, 15), answered_by="human", talk=200),
        *_call(
            "c8",
            "a3",
            "L6",
            _at(DAY1, 14, 0),
            team="T2",
            direction="inbound",
            answered_by="human",
            talk=50,
            resolved=False,
        ),
        *_call(
            "c9",
            "a3",
            "L6",
            _at(DAY1, 15, 0),
            direction="inbound",
            answered_by="human",
            talk=50,
            resolved=True,
        ),
        *_call("c6", "a1", "L4", _at(DAY2, 8, 0), answered_by="human", talk=60),
        *_call("f1", "a4", "L8", _at(DAY0, 10), team="T3", direction="inbound"),
        *(
            event
            for call_id, agent, lead, hour, minute, resolved in (
                ("f2", "a5", "L8", 10, 30, True),
                ("f3", "a4", "L9", 11, 0, False),
                ("f4", "a5", "L9", 11, 30, True),
                ("f5", "a5", "L10", 12, 0, True),
            )
            for event in _call(
                call_id,
                agent,
                lead,
                _at(DAY0, hour, minute),
                team={"a4": "T3", "a5": "T4"}[agent],
                direction="inbound",
                answered_by="human",
                talk=40,
                resolved=resolved,
            )
        ),
        *_call("c7", "a2", "L5", _at(DAY2, 9, 0)),
        {
            "event_id": "q1",
            "type": "quote.given",
            "occurred_at": _at(DAY1, 9, 2),
            "agent_id": "a1",
            "lead_id": "L1",
            "amount": "999",
        },
        {
            "event_id": "o1",
            "type": "sale.closed",
            "occurred_at": _at(DAY1, 9, 10),
            "agent_id": "a1",
            "lead_id": "L1",
            "order_id": "o1",
            "amount": "1000.50",
            "margin": "100",
        },
        {
            "event_id": "o2",
            "type": "sale.closed",
            "occurred_at": _at(DAY1, 11, 20),
            "agent_id": "a2",
            "lead_id": "L1",
            "order_id": "o2",
            "amount": "500",
        },
        {
            "event_id": "o2-x",
            "type": "sale.cancelled",
            "occurred_at": _at(DAY1, 11, 40),
            "agent_id": "a2",
            "order_id": "o2",
        },
        {
            "event_id": "sv1",
            "type": "survey.completed",
            "occurred_at": _at(DAY1, 9, 20),
            "agent_id": "a1",
            "call_id": "c1",
            "score": 4,
        },
        {
            "event_id": "o3",
            "type": "sale.closed",
            "occurred_at": _at(DAY1, 11, 50),
            "agent_id": "a2",
            "lead_id": "L3",
            "order_id": "o3",
            "amount": "200",
            "customer_type": "existing",
        },
        {
            "event_id": "p1",
            "type": "payment.received",
            "occurred_at": _at(DAY1, 9, 30),
            "agent_id": "a1",
            "order_id": "o1",
            "amount": "400",
        },
        {
            "event_id": "p2",
            "type": "payment.received",
            "occurred_at": _at(DAY1, 11, 45),
            "agent_id": "a2",
            "order_id": "o2",
            "amount": "100",
        },
        {
            "event_id": "s1",
            "type": "lead.stage_changed",
            "occurred_at": _at(DAY1, 9, 3),
            "agent_id": "a1",
            "lead_id": "L1",
            "stage": "intent",
        },
        {
            "event_id": "s2",
            "type": "lead.stage_changed",
            "occurred_at": _at(DAY1, 9, 6),
            "agent_id": "a1",
            "lead_id": "L2",
            "stage": "ready",
        },
        {
            "event_id": "s3",
            "type": "lead.stage_changed",
            "occurred_at": _at(DAY1, 9, 7),
            "agent_id": "a1",
            "lead_id": "L7",
            "stage": "acknowledged",
        },
    ]
    for event_id, hour, state in (
        ("st1", 9, "available"),
        ("st2", 12, "paused"),
        ("st3", 13, "logged_out"),
    ):
        events.append(
            {
                "event_id": event_id,
                "type": "agent.state_changed",
                "occurred_at": _at(DAY1, hour),
                "agent_id": "a1",
                "state": state,
            }
        )
    random.Random(5).shuffle(events)
    return events


@pytest.fixture
def floor(any_pipeline: Pipeline) -> Pipeline:
    events = _floor()
    any_pipeline.post(events + events[:10])
    any_pipeline.wait_caught_up()
    return any_pipeline


def _day(day: datetime, **params: Any) -> dict[str, Any]:
    return {"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat(), **params}


def _rows(body: dict[str, Any], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in body["rows"]}


def test_every_number_of_the_hand_worked_floor(floor: Pipeline) -> None:
    metrics = (
        "dials,inbound_calls,connects,contacts,effective_calls,talk_seconds,wrap_seconds,"
        "quotes,sales,revenue,margin,leads_dialed,leads_reached,leads_quoted,leads_won,"
        "connect_rate,contact_rate,close_rate,avg_order_value,margin_rate,csat_avg,"
        "logged_in_seconds,dials_per_hour,occupancy,resolved_first_call,fcr_rate,dispositions,"
        "sales_per_hour,contacts_per_hour"
    )
    rows = _rows(floor.metrics(**_day(DAY1, metrics=metrics, group_by="agent")), "agent_id")
    assert rows["a1"] | {} == rows["a1"]
    a1, a2, a3 = rows["a1"], rows["a2"], rows["a3"]
    assert (a1["dials"], a1["connects"], a1["contacts"], a1["effective_calls"]) == (3, 2, 2, 1)
    assert (a1["talk_seconds"], a1["wrap_seconds"]) == (120, 10)
    assert (a1["quotes"], a1["sales"], a1["revenue"], a1["margin"]) == (1, 1, "1000.50", "100.00")
    assert (a1["leads_dialed"], a1["leads_reached"], a1["leads_quoted"], a1["leads_won"]) == (
        2,
        1,
        1,
        1,
    )
    assert a1["connect_rate"] == 0.666667
    assert a1["contact_rate"] == 0.5
    assert a1["close_rate"] == 1.0
    assert a1["avg_order_value"] == "1000.50"
    assert a1["margin_rate"] == 0.099950  # 100 / 1000.50
    assert a1["csat_avg"] == 4.0
    assert a1["logged_in_seconds"] == 4 * 3600
    assert a1["dials_per_hour"] == 0.75
    # One sale (o1) and two contacts (c1, c3) in four hours logged in.
    assert a1["sales_per_hour"] == 0.25
    assert a1["contacts_per_hour"] == 0.5
    assert a1["occupancy"] == round(130 / 14400, 6)
    assert a1["dispositions"] == {"SALE": 1, "NA": 1}

    assert (a2["dials"], a2["connects"], a2["contacts"], a2["talk_seconds"]) == (2, 1, 1, 200)
    assert (a2["sales"], a2["revenue"], a2["leads_dialed"], a2["leads_won"]) == (1, "200.00", 2, 1)
    assert a2["close_rate"] is None and a2["avg_order_value"] == "200.00"
    # a2 never logged in: no time to divide by.
    assert a2["sales_per_hour"] is None and a2["contacts_per_hour"] is None

    assert (a3["dials"], a3["inbound_calls"], a3["connects"]) == (0, 2, 2)
    assert a3["connect_rate"] is None
    # c8 was L6's first inbound call of the day, and it was not resolved.
    assert (a3["resolved_first_call"], a3["fcr_rate"]) == (0, 0.0)
    later = floor.metrics(
        **{"from": _at(DAY1, 14, 30), "to": _at(DAY1, 16)},
        metrics="resolved_first_call,fcr_rate",
        agent_id="a3",
    )
    assert later["rows"] == [{"resolved_first_call": 1, "fcr_rate": 1.0}]


def test_first_call_resolution_counts_the_leads_first_inbound_call(floor: Pipeline) -> None:
    keys = "resolved_first_call,fcr_rate,inbound_calls,connects"
    whole = floor.metrics(**_day(DAY0, metrics=keys))["rows"]
    # Only f5 resolved its lead on the lead's first inbound call: L8's was f1 (unanswered),
    # L9's was f3 (not resolved). Four inbound calls were answered.
    assert whole == [
        {"resolved_first_call": 1, "fcr_rate": 0.25, "inbound_calls": 5, "connects": 4}
    ]
    by_agent = _rows(floor.metrics(**_day(DAY0, metrics=keys, group_by="agent")), "agent_id")
    assert (by_agent["a4"]["resolved_first_call"], by_agent["a4"]["fcr_rate"]) == (0, 0.0)
    assert (by_agent["a5"]["resolved_first_call"], by_agent["a5"]["fcr_rate"]) == (1, 0.333333)
    by_team = _rows(floor.metrics(**_day(DAY0, metrics=keys, group_by="team")), "team_id")
    assert (by_team["T3"]["resolved_first_call"], by_team["T4"]["resolved_first_call"]) == (0, 1)
    # A filter does not change which call was first: a5 resolved L8 and L9, but another
    # agent had taken them first.
    alone = floor.metrics(**_day(DAY0, metrics=keys, agent_id="a5"))["rows"]
    assert alone == [
        {"resolved_first_call": 1, "fcr_rate": 0.333333, "inbound_calls": 3, "connects": 3}
    ]
    # From 10:15, L8's first inbound call in the range is f2, which resolved it.
    later = floor.metrics(
        **{"from": _at(DAY0, 10, 15), "to": _at(DAY0, 13)}, metrics=keys, agent_id="a5"
    )
    assert later["rows"][0]["resolved_first_call"] == 2


def test_time_logged_in_belongs_to_agents_not_campaigns(floor: Pipeline) -> None:
    keys = "logged_in_seconds,occupancy,dials_per_hour,sales_per_hour,contacts_per_hour,dials"
    for params in ({"campaign_id": "k1"}, {"group_by": "campaign"}):
        body = floor.metrics(**_day(DAY1, metrics=keys, **params))
        assert all(row["logged_in_seconds"] is None for row in body["rows"]), body
        assert all(row["occupancy"] is None for row in body["rows"]), body
        assert all(row["sales_per_hour"] is None for row in body["rows"]), body
        assert all(row["contacts_per_hour"] is None for row in body["rows"]), body
    board = floor.api.get(
        "/v1/leaderboard",
        params={**_day(DAY1), "metric": "logged_in_seconds", "campaign_id": "k1"},
    )
    assert board.status_code == 200, board.text
    assert board.json()["rows"] == []


def test_the_rest_of_the_playbook_kpis(floor: Pipeline) -> None:
    metrics = (
        "collections,new_customer_sales,existing_customer_sales,leads_intent,intent_rate,"
        "lead_conversion_rate,quote_rate,conversion_rate,avg_revenue_per_won_lead,"
        "avg_talk_seconds,avg_handle_seconds,calls_per_lead,effective_talk_seconds,"
        "inbound_connects,csat_responses,csat_sum"
    )
    rows = _rows(floor.metrics(**_day(DAY1, metrics=metrics, group_by="agent")), "agent_id")
    a1, a2 = rows["a1"], rows["a2"]
    assert a1["collections"] == "400.00"
    assert a2["collections"] == "0.00"  # its only payment is on a cancelled order
    assert (a1["new_customer_sales"], a1["existing_customer_sales"]) == (1, 0)
    assert (a2["new_customer_sales"], a2["existing_customer_sales"]) == (0, 1)
    assert a1["leads_intent"] == 2  # L1 intent, L2 ready; L7 only acknowledged
    assert a1["intent_rate"] == 2.0  # 2 / 1 lead reached
    assert a1["lead_conversion_rate"] == 0.5
    assert (a1["quote_rate"], a1["conversion_rate"], a2["conversion_rate"]) == (1.0, 0.5, 0.5)
    assert a1["avg_revenue_per_won_lead"] == "1000.50"
    assert a2["avg_revenue_per_won_lead"] == "200.00"
    assert (a1["avg_talk_seconds"], a1["avg_handle_seconds"]) == (60.0, 65.0)
    assert (a1["calls_per_lead"], a1["effective_talk_seconds"]) == (1.5, 90)
    assert rows["a3"]["inbound_connects"] == 2
    assert (a1["csat_responses"], a1["csat_sum"]) == (1, 4)


def test_lead_counts_are_distinct_across_agents(floor: Pipeline) -> None:
    total = floor.metrics(**_day(DAY1, metrics="dials,leads_dialed,leads_reached,leads_won"))
    # L1 was dialed by a1 and a2: once for the floor. Reached: L1, and L6 on its inbound calls.
    assert total["rows"] == [{"dials": 5, "leads_dialed": 3, "leads_reached": 2, "leads_won": 2}]


def test_an_agent_without_team_counts_for_its_roster_team(floor: Pipeline) -> None:
    rows = _rows(
        floor.metrics(**_day(DAY1, metrics="dials,leads_dialed", group_by="team")), "team_id"
    )
    assert rows["T1"]["dials"] == 3 and rows["T2"]["dials"] == 2
    assert rows["T1"]["leads_dialed"] == 2 and rows["T2"]["leads_dialed"] == 2
    only_t2 = floor.metrics(**_day(DAY1, metrics="dials", group_by="agent", team_id="T2"))
    assert {r["agent_id"]: r["dials"] for r in only_t2["rows"]} == {"a2": 2, "a3": 0}


def test_granularities(floor: Pipeline) -> None:
    hours = floor.metrics(**_day(DAY1, metrics="dials", granularity="hour"))["rows"]
    assert [(r["bucket"], r["dials"]) for r in hours if r["dials"]] == [
        ("2026-11-02T09:00:00+08:00", 3),
        ("2026-11-02T10:00:00+08:00", 1),
        ("2026-11-02T11:00:00+08:00", 1),
    ]
    # A partial first day (from the minute table) and a whole second day (the rollup).
    days = floor.metrics(
        **{"from": _at(DAY1, 9), "to": (DAY2 + timedelta(days=1)).isoformat()},
        metrics="dials,leads_dialed",
        granularity="day",
    )["rows"]
    assert [(r["bucket"], r["dials"], r["leads_dialed"]) for r in days] == [
        ("2026-11-02T00:00:00+08:00", 5, 3),
        ("2026-11-03T00:00:00+08:00", 2, 2),
    ]
    week = floor.metrics(
        **{"from": _at(DAY1, 9), "to": (DAY2 + timedelta(days=1)).isoformat()},
        metrics="dials,leads_dialed",
        granularity="week",
    )["rows"]
    assert week == [{"bucket": "2026-11-02T00:00:00+08:00", "dials": 7, "leads_dialed": 5}]


def test_leaderboard_ranks_ties_and_rank_change(floor: Pipeline) -> None:
    day1 = floor.api.get("/v1/leaderboard", params=_day(DAY1, metric="dials")).json()
    assert [(r["rank"], r["agent_id"], r["value"]) for r in day1["rows"]] == [
        (1, "a1", 3),
        (2, "a2", 2),
        (3, "a3", 0),
    ]
    day2 = floor.api.get("/v1/leaderboard", params=_day(DAY2, metric="dials")).json()
    ranked = [
        (r["rank"], r["agent_id"], r["previous_rank"], r["rank_change"]) for r in day2["rows"]
    ]
    assert ranked == [(1, "a1", 1, 0), (1, "a2", 2, 1)]
    assert day2["rows"][0]["team_id"] == "T1"


def test_leaderboard_minimum_volume_for_ratios(floor: Pipeline) -> None:
    params = _day(DAY1, metric="connect_rate", min_volume=0)
    rows = floor.api.get("/v1/leaderboard", params=params).json()["rows"]
    assert [(r["agent_id"], r["value"]) for r in rows] == [("a1", 0.666667), ("a2", 0.5)]
    params["min_volume"] = 3
    rows = floor.api.get("/v1/leaderboard", params=params).json()["rows"]
    assert [r["agent_id"] for r in rows] == ["a1"]


def test_bad_queries_answer_422_with_a_reason(floor: Pipeline) -> None:
    for params, fragment in (
        ({"metrics": "dialz"}, "unknown metric"),
        ({"group_by": "region"}, "group_by"),
        ({"period": "fortnight"}, "period"),
        ({"from": "2026-11-02T00:00:00"}, "go together"),
        ({"from": "yesterday", "to": "today"}, "RFC 3339"),
        ({"from": "0001-01-01T00:00:00+08:00", "to": _at(DAY1, 9)}, "from"),
        ({"from": _at(DAY1, 9), "to": "9999-12-31T23:59:00-10:00"}, "to"),
    ):
        response = floor.api.get("/v1/metrics", params=params)
        assert response.status_code == 422, params
        assert fragment in str(response.json()), (params, response.json())


def test_driver_model_against_a_target(floor: Pipeline) -> None:
    targets = {
        "target_leads_dialed": "4",
        "target_contact_rate": "0.5",
        "target_quote_rate": "0.5",
        "target_close_rate": "0.5",
        "target_avg_revenue_per_won_lead": "1000.50",
        "target_margin_rate": "0.1",
    }
    body = floor.api.get(
        "/v1/drivers", params=_day(DAY1, agent_id="a1", reference="target", **targets)
    ).json()
    # a1: 2 leads × 1/2 reached × 1/1 quoted × 1/1 won × 1000.50 per lead × 100/1000.50 margin
    assert body["result_kind"] == "margin"
    assert (body["result"], body["reference_result"]) == ("100.00", "50.03")
    shares = {d["driver"]: d["log_share"] for d in body["drivers"]}
    assert shares == {
        "leads_dialed": -0.693147,
        "contact_rate": 0.0,
        "quote_rate": 0.693147,
        "close_rate": 0.693147,
        "avg_revenue_per_won_lead": 0.0,
        "margin_rate": round(math.log(100 / 1000.5 / 0.1), 6),
    }
    assert body["log_gap"] == round(math.log(100 / 50.025), 6)
    assert body["ranked_by_cost"] == ["leads_dialed", "margin_rate"]
    assert body["drivers"][0]["question"] == "too few dials?"


def test_driver_model_needs_a_complete_target(floor: Pipeline) -> None:
    response = floor.api.get(
        "/v1/drivers", params=_day(DAY1, agent_id="a1", reference="target", target_quote_rate=1)
    )
    assert response.status_code == 422
    assert "target_leads_dialed" in response.json()["error"]["message"]
    # An empty or listed id is refused, never a 500.
    for bad in ({"agent_id": ""}, {"team_id": " "}, {"agent_id": "a1,a2"}, {"team_id": "T1,T2"}):
        answer = floor.api.get("/v1/drivers", params=_day(DAY1, **bad))
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"]["details"][0]["field"] in bad


def test_best_time_to_call(floor: Pipeline) -> None:
    params = {"from": DAY1.isoformat(), "to": (DAY2 + timedelta(days=1)).isoformat()}
    cells = floor.api.get("/v1/best-time", params=params).json()["cells"]
    table = {(c["weekday"], c["hour"]): c for c in cells}
    monday_9 = table[(1, 9)]
    assert (monday_9["dials"], monday_9["connects"], monday_9["leads_dialed"]) == (3, 1, 3)
    assert (monday_9["connect_rate"], monday_9["contact_rate"]) == (0.333333, 0.333333)
    assert (table[(1, 10)]["connect_rate"], table[(1, 10)]["contact_rate"]) == (1.0, 1.0)
    assert table[(1, 14)]["connect_rate"] is None  # inbound only: no dials
    tuesday = {hour: table[(2, hour)] for hour in (8, 9)}
    assert (tuesday[8]["connect_rate"], tuesday[9]["connect_rate"]) == (1.0, 0.0)


def test_dispositions_endpoint(floor: Pipeline) -> None:
    body = floor.api.get("/v1/dispositions", params=_day(DAY1, group_by="agent")).json()
    assert [(r["agent_id"], r["dispositions"], r["calls"]) for r in body["rows"]] == [
        ("a1", {"NA": 1, "SALE": 1}, 2)
    ]
    # SALE: a human answered, a contact (VICIdial ships it without), a sale; NA: no flags.
    on = {flag for flag, calls in body["rows"][0]["flag_calls"].items() if calls}
    assert on == {"human_answered", "contact", "sale"}
    assert body["rows"][0]["unknown_calls"] == 0


def test_an_agents_own_rank_with_its_neighbours(floor: Pipeline) -> None:
    params = _day(DAY1, metric="dials", around=1)
    body = floor.api.get("/v1/leaderboard/agents/a3", params=params).json()
    assert body["agent"]["rank"] == 3
    assert [r["agent_id"] for r in body["rows"]] == ["a2", "a3"]
    missing = floor.api.get("/v1/leaderboard/agents/nobody", params=params)
    assert missing.status_code == 404
