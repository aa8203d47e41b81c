"""The read API's limits, on the running services: a burst from one key leaves the API to
everybody else, every number a request carries is finite and bounded, an answer's size is
capped before it is computed, no redirect carries the caller's Host, and refused
credentials are throttled per client address."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.pipeline import TIMEZONE, MakePipeline, Pipeline, bearer

pytestmark = pytest.mark.timeout(300)

ADMIN_KEY = "bootstrap-admin-key-for-the-limit-tests-0123456789"
ZONE = ZoneInfo(TIMEZONE)


def read_key(pipeline: Pipeline, name: str) -> str:
    response = pipeline.api.post(
        "/v1/admin/keys", json={"name": name, "scopes": ["read"]}, headers=bearer(ADMIN_KEY)
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def calls(agents: int, per_agent: int) -> list[dict[str, Any]]:
    """Connected calls spread over the last three hours, agents in two teams."""
    first = datetime.now(ZONE).replace(second=0, microsecond=0) - timedelta(hours=3)
    events = []
    for a in range(agents):
        for c in range(per_agent):
            started = first + timedelta(minutes=3 * c + a)
            events.append(
                {
                    "event_id": f"e-{a}-{c}",
                    "type": "call.completed",
                    "occurred_at": started.isoformat(),
                    "agent_id": f"a-{a}",
                    "team_id": f"t-{a % 2}",
                    "campaign_id": "camp-1",
                    "call_id": f"c-{a}-{c}",
                    "lead_id": f"L-{a}-{c}",
                    "answered": True,
                    "talk_seconds": 30 + c,
                    "disposition": "NI",
                }
            )
    return events


def state(agent: str, team: str, at: datetime, value: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"s-{agent}-{n}",
        "type": "agent.state_changed",
        "occurred_at": at.isoformat(),
        "agent_id": agent,
        "team_id": team,
        "state": value,
    }


def today_local() -> datetime:
    now = datetime.now(ZONE)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------------------------------------
# Requests in flight, threads and database connections


BURST_PATHS = [
    ("/v1/working-calendars", {}),
    ("/v1/metrics", {"period": "last_24h", "group_by": "agent"}),
    ("/v1/leaderboard", {"period": "last_24h", "metric": "talk_seconds"}),
    ("/v1/dispositions", {"period": "last_24h"}),
]


async def _burst(base_url: str, key: str, size: int) -> list[tuple[int, str | None, float]]:
    """``size`` requests from ``key`` at once: status, Retry-After and seconds of each."""
    limits = httpx.Limits(max_connections=size + 10, max_keepalive_connections=size + 10)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def one(path: str, params: dict[str, str]) -> tuple[int, str | None, float]:
            started = time.perf_counter()
            response = await client.get(path, params=params, headers=bearer(key))
            seconds = time.perf_counter() - started
            return response.status_code, response.headers.get("Retry-After"), seconds

        paths = [BURST_PATHS[i % len(BURST_PATHS)] for i in range(size)]
        return list(await asyncio.gather(*(one(*p) for p in paths)))


def _read_meanwhile(
    base_url: str, key: str, ready: threading.Event, stop: threading.Event
) -> list[tuple[int, float]]:
    """Another caller's reads, one after another, until ``stop`` (at least ten)."""
    answers: list[tuple[int, float]] = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        client.get("/v1/working-calendars", headers=bearer(key))  # a connection of its own
        ready.set()
        while not stop.is_set() or len(answers) < 10:
            path, params = BURST_PATHS[len(answers) % len(BURST_PATHS)]
            started = time.perf_counter()
            response = client.get(path, params=params, headers=bearer(key))
            answers.append((response.status_code, time.perf_counter() - started))
            time.sleep(0.02)
    return answers


def test_a_burst_from_one_key_leaves_the_api_to_everybody_else(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(CALLBOARD_ADMIN_KEY=ADMIN_KEY, CALLBOARD_LAG_SAMPLE_SECONDS="0")
    pipeline.post(calls(agents=20, per_agent=40))
    pipeline.wait_caught_up()
    burster, other = read_key(pipeline, "script"), read_key(pipeline, "wallboard")
    time.sleep(5.5)  # every process's key cache has read both keys

    base_url = str(pipeline.api.base_url)
    ready, stop = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        meanwhile = pool.submit(_read_meanwhile, base_url, other, ready, stop)
        assert ready.wait(30)
        started = time.perf_counter()
        burst = asyncio.run(_burst(base_url, burster, 200))
        took = time.perf_counter() - started
        stop.set()
        others = meanwhile.result()

    statuses = Counter(status for status, _, _ in burst)
    slowest = max(seconds for _, _, seconds in burst)
    print(f"burst {dict(statuses)} in {took:.2f} s, slowest {slowest:.2f} s; other key {others}")
    assert set(statuses) <= {200, 429, 503}, statuses
    # The bound on one key's requests in flight refused part of the burst with Retry-After.
    assert statuses[429] > 0 and statuses[200] > 0, statuses
    assert all(retry is not None and int(retry) >= 1 for s, retry, _ in burst if s != 200)
    # Nobody waits for a connection the way a 30 s pool timeout made them.
    assert slowest < 10.0, sorted(s for *_, s in burst)[-5:]
    # Every request of the other key answered, each within a second.
    assert [status for status, _ in others] == [200] * len(others), others
    assert max(seconds for _, seconds in others) < 1.0, others
    assert took < 10.0


def test_pool_exhaustion_is_503_with_retry_after_at_once(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(
        CALLBOARD_LAG_SAMPLE_SECONDS="0",
        CALLBOARD_DB_POOL_SIZE="1",
        CALLBOARD_DB_POOL_TIMEOUT_SECONDS="0.02",
        CALLBOARD_MAX_REQUESTS_IN_FLIGHT="64",
        CALLBOARD_MAX_REQUESTS_IN_FLIGHT_PER_KEY="64",
        CALLBOARD_RATE_LIMIT_PER_SECOND="0",
    )
    pipeline.post(calls(agents=20, per_agent=40))
    pipeline.wait_caught_up()

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        base_url = str(pipeline.api.base_url)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
            params = {"period": "last_24h", "group_by": "agent"}
            return list(
                await asyncio.gather(*(client.get("/v1/metrics", params=params) for _ in range(60)))
            )

    started = time.perf_counter()
    answers = asyncio.run(burst())
    took = time.perf_counter() - started

    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0 and statuses[200] > 0, statuses
    for refused in (r for r in answers if r.status_code == 503):
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "unavailable"
        assert "connection" in refused.json()["error"]["message"]
    assert took < 10.0
    # And the API serves again at once.
    assert pipeline.api.get("/v1/metrics", params={"period": "mtd"}).status_code == 200


# ---------------------------------------------------------------------------------------------
# Numbers


HUGE = "100000000000000000000"
DRIVERS = ("leads_dialed", "contact_rate", "quote_rate", "close_rate", "avg_revenue_per_won_lead")
GOOD_TARGETS = {
    "target_leads_dialed": "100",
    "target_contact_rate": "0.5",
    "target_quote_rate": "0.3",
    "target_close_rate": "0.2",
    "target_avg_revenue_per_won_lead": "1000",
}


def _refused_numbers() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, query or body) of requests whose one number is out of bounds."""
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for bad in ("NaN", "Infinity", "-Infinity", "sNaN", "1e999999", "-1", "x"):
        for driver in DRIVERS:
            params = {**GOOD_TARGETS, f"target_{driver}": bad}
            cases.append(
                ("GET", "/v1/drivers", {"agent_id": "a-1", "reference": "target", **params})
            )
        cases.append(("GET", "/v1/scorecards", {"weights": f"revenue:{bad}"}))
        cases.append(("GET", "/v1/scorecards", {"weights": "revenue:1", "cap": bad}))
    cases += [
        ("GET", "/v1/scorecards", {"weights": "revenue:1e999999,sales:-1e999999"}),
        ("GET", "/v1/scorecards", {"weights": "revenue:2,sales:-1"}),
        ("GET", "/v1/scorecards", {"weights": "revenue:1", "cap": "0"}),
        ("GET", "/v1/scorecards", {"weights": "revenue:1", "cap": HUGE}),
        ("GET", "/v1/leaderboard", {"min_volume": HUGE}),
        ("GET", "/v1/leaderboard", {"min_volume": "-1"}),
        ("GET", "/v1/leaderboard", {"min_volume": "NaN"}),
        ("GET", "/v1/leaderboard", {"limit": HUGE}),
        ("GET", "/v1/leaderboard", {"limit": "0"}),
        ("GET", "/v1/leaderboard/agents/a-1", {"min_volume": HUGE}),
        ("GET", "/v1/leaderboard/agents/a-1", {"around": HUGE}),
        ("GET", "/v1/stream", {"limit": HUGE}),
        ("GET", f"/v1/targets/{HUGE}", {}),
        ("GET", "/v1/targets/0", {}),
        ("POST", "/v1/targets/1/split", {"uplift": "NaN"}),
        ("POST", "/v1/targets/1/split", {"uplift": HUGE}),
        ("POST", "/v1/targets/1/split", {"weighting": "given", "weights": {"a-1": "NaN"}}),
        ("POST", "/v1/targets/1/split", {"weighting": "given", "weights": {"a-1": HUGE}}),
        ("PATCH", "/v1/targets/1", {"value": "NaN"}),
        ("PATCH", "/v1/targets/1", {"value": "1e999999"}),
        ("PUT", "/v1/working-calendars/t-1", {"weekdays": [int(HUGE)]}),
    ]
    for value in ("NaN", "Infinity", "1e999999", HUGE, "-1"):
        target = {
            "scope": "team",
            "scope_id": "t-1",
            "kpi": "revenue",
            "period": "month",
            "period_start": "2026-11-01",
            "value": value,
        }
        cases.append(("POST", "/v1/targets", target))
    return cases


def test_every_number_is_finite_and_bounded(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(CALLBOARD_LAG_SAMPLE_SECONDS="0", CALLBOARD_ADMIN_KEY=ADMIN_KEY)
    pipeline.post(calls(agents=4, per_agent=5))
    pipeline.wait_caught_up()
    api = pipeline.api

    wrong = []
    for method, path, given in _refused_numbers():
        if method == "GET":
            response = api.get(path, params=given)
        else:
            response = api.request(method, path, json=given, headers=bearer(ADMIN_KEY))
        if response.status_code != 422 or response.json()["error"]["code"] != "invalid_input":
            wrong.append((method, path, given, response.status_code, response.text[:200]))
    assert wrong == [], wrong

    # The error names the number at fault.
    nan = api.get(
        "/v1/drivers",
        params={**GOOD_TARGETS, "agent_id": "a-1", "reference": "target"}
        | {"target_close_rate": "NaN"},
    )
    assert "target_close_rate" in nan.text, nan.text
    weight = api.get("/v1/scorecards", params={"weights": "revenue:NaN"})
    assert "weights.revenue" in weight.text, weight.text

    # Numbers inside the bounds still answer.
    good = api.get("/v1/drivers", params={**GOOD_TARGETS, "agent_id": "a-1", "reference": "target"})
    assert good.status_code == 200, good.text
    top = api.get(
        "/v1/leaderboard",
        params={"period": "last_24h", "metric": "dials", "min_volume": "5", "limit": "3"},
    )
    assert top.status_code == 200, top.text
    # Four agents of five calls each: all reach a volume of 5, three are shown.
    assert [row["value"] for row in top.json()["rows"]] == [5, 5, 5]
    card = api.get("/v1/scorecards", params={"weights": "revenue:0.5,sales:0.5", "cap": "1.5"})
    assert card.status_code == 200, card.text
    assert card.json()["cap"] == 1.5


# ---------------------------------------------------------------------------------------------
# The size of an answer


def test_an_answer_too_large_is_refused_before_it_is_computed(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(CALLBOARD_LAG_SAMPLE_SECONDS="0")
    now = datetime.now(ZONE)
    year_start = now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    # One agent available since the first of January; six more since a week ago.
    events = [state("a-0", "t-1", year_start, "available", 0)]
    week_ago = today_local() - timedelta(days=7)
    events += [state(f"a-{i}", "t-1", week_ago, "available", 0) for i in range(1, 7)]
    pipeline.post(events)
    pipeline.wait_caught_up()
    api = pipeline.api

    asked = {"period": "ytd", "granularity": "minute", "metrics": "logged_in_seconds"}
    started = time.perf_counter()
    refused = api.get("/v1/metrics", params={**asked, "agent_id": "a-0"})
    took = time.perf_counter() - started
    assert refused.status_code == 422, refused.text[:300]
    error = refused.json()["error"]
    minutes_so_far = (today_local() + timedelta(days=1) - year_start) // timedelta(minutes=1)
    assert error["details"]["max_rows"] == 50_000
    assert error["details"]["buckets"] == minutes_so_far
    assert "50,000" in error["message"] and "CALLBOARD_MAX_ANSWER_ROWS" in error["message"]
    assert "coarser granularity (hour, day, week, month)" in error["message"]
    assert "shorter range" in error["message"]
    assert took < 1.0, took

    # Hours fit: the time logged in adds up to the time since the first of January.
    by_hour = api.get("/v1/metrics", params={**asked, "granularity": "hour", "agent_id": "a-0"})
    assert by_hour.status_code == 200, by_hour.text[:300]
    rows = by_hour.json()["rows"]
    since = (datetime.now(UTC) - year_start).total_seconds()
    assert abs(sum(r["logged_in_seconds"] for r in rows) - since) < 30
    assert abs(len(rows) - since / 3600) <= 1.5

    # Buckets × groups: 7 agents × 8,640 minutes of six days is past the cap, one agent is not.
    six_days = {
        "from": (today_local() - timedelta(days=6)).isoformat(),
        "to": today_local().isoformat(),
        "granularity": "minute",
        "metrics": "logged_in_seconds",
    }
    grouped = api.get("/v1/metrics", params={**six_days, "group_by": "agent"})
    assert grouped.status_code == 422, grouped.text[:300]
    assert {"buckets": 8640, "groups": 7}.items() <= grouped.json()["error"]["details"].items()
    assert grouped.json()["error"]["details"]["rows"] == 8640 * 7
    one = api.get("/v1/metrics", params={**six_days, "group_by": "agent", "agent_id": "a-3"})
    assert one.status_code == 200, one.text[:300]
    assert len(one.json()["rows"]) == 8640
    assert {r["logged_in_seconds"] for r in one.json()["rows"]} == {60}
    # Dispositions are answers of the same shape, with the same cap.
    dispositions = {"period": "ytd", "granularity": "minute", "agent_id": "a-0"}
    assert api.get("/v1/dispositions", params=dispositions).status_code == 422


# ---------------------------------------------------------------------------------------------
# Redirects and refused credentials


def test_no_redirect_carries_the_callers_host(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(CALLBOARD_LAG_SAMPLE_SECONDS="0", CALLBOARD_ADMIN_KEY=ADMIN_KEY)
    for client, path in (
        (pipeline.api, "/v1/admin/keys/"),
        (pipeline.api, "/v1/metrics/"),
        (pipeline.ingest, "/v1/events/"),
    ):
        response = client.get(path, headers={"Host": "evil.example", **bearer(ADMIN_KEY)})
        assert response.status_code == 404, (path, response.status_code, response.headers)
        assert "location" not in response.headers
        assert response.json()["error"]["code"] == "not_found"


def test_refused_credentials_are_throttled_per_client_address(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(
        CALLBOARD_LAG_SAMPLE_SECONDS="0",
        CALLBOARD_ADMIN_KEY=ADMIN_KEY,
        CALLBOARD_AUTH_FAILURE_BURST="5",
        CALLBOARD_AUTH_FAILURES_PER_MINUTE="6",
    )
    api = pipeline.api
    assert api.get("/v1/admin/keys", headers=bearer(ADMIN_KEY)).status_code == 200
    guesses = [f"cb_{i:012x}_" + "x" * 43 for i in range(8)]
    statuses = [api.get("/v1/admin/keys", headers=bearer(g)).status_code for g in guesses]
    # Five refusals, then the address is throttled: 429 with Retry-After, whatever key it sends,
    # so that a right guess cannot be told from a wrong one.
    assert statuses == [401] * 5 + [429] * 3, statuses
    throttled = api.get("/v1/admin/keys", headers=bearer(ADMIN_KEY))
    assert throttled.status_code == 429, throttled.text
    assert throttled.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 10
    # Without a key, too.
    assert api.get("/v1/admin/keys").status_code == 429
    # One refusal's worth refills in ten seconds.
    time.sleep(10.5)
    assert api.get("/v1/admin/keys", headers=bearer(ADMIN_KEY)).status_code == 200
