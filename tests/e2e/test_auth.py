"""API keys, scopes, team limits, rate limits and request limits, on the running services."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.pipeline import REPO, MakePipeline, Pipeline, bearer, create_key

pytestmark = pytest.mark.timeout(300)

ADMIN_KEY = "bootstrap-admin-key-for-the-tests-0123456789"
CACHE_SECONDS = 0.3


def call(event_id: str, agent: str = "a-1", team: str = "t-1", **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "call.started",
        "occurred_at": "2026-11-02T10:00:00+08:00",
        "agent_id": agent,
        "team_id": team,
        "call_id": f"call-{event_id}",
        "lead_id": f"L-{event_id}",
        **fields,
    }


DAY = {"from": "2026-11-02T00:00:00+08:00", "to": "2026-11-03T00:00:00+08:00"}


@pytest.fixture
def make_pipeline(make_pipeline: MakePipeline) -> MakePipeline:
    """The shared fixture, with the key cache short enough to see revocations."""

    def make(**env: str) -> Pipeline:
        return make_pipeline(**{"CALLBOARD_AUTH_CACHE_SECONDS": str(CACHE_SECONDS), **env})

    return make


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "keys", *args],
        cwd=REPO,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    # Never data: the error body and nothing else.
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def settle() -> None:
    """Let every process's key cache expire."""
    time.sleep(CACHE_SECONDS + 0.2)


def test_auto_mode_scopes_teams_and_revocation(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(CALLBOARD_ADMIN_KEY=ADMIN_KEY)
    ingest, api = pipeline.ingest, pipeline.api

    # A fresh install: ingest and read are open, admin never is.
    assert ingest.post("/v1/events", json=call("open-1")).status_code == 202
    assert api.get("/v1/metrics", params=DAY).status_code == 200
    assert_refused(api.get("/v1/admin/keys"), 401, "unauthorized")
    assert_refused(
        api.get("/v1/admin/keys", headers=bearer("cb_000000000000_" + "x" * 43)),
        401,
        "unauthorized",
    )
    assert_refused(
        api.get("/v1/admin/keys", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}),
        401,
        "unauthorized",
    )
    assert api.get("/v1/admin/keys", headers=bearer(ADMIN_KEY)).json() == []

    dialer = create_key(pipeline, ADMIN_KEY, name="dialer", scopes=["ingest"])
    board = create_key(pipeline, ADMIN_KEY, name="wallboard", scopes=["read"])
    team_lead = create_key(pipeline, ADMIN_KEY, name="lead t-1", scopes=["read"], team_ids=["t-1"])
    made = cli(pipeline, "create", "--name", "ops", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    ops_key = made.stdout.strip()
    assert ops_key.startswith("cb_") and len(ops_key) == 59
    assert dialer["key"].startswith(dialer["prefix"])
    settle()

    # Ingest: only an ingest key, by either header.
    assert_refused(ingest.post("/v1/events", json=call("no-key")), 401, "unauthorized")
    assert_refused(
        ingest.post("/v1/events", json=call("r"), headers=bearer(board["key"])), 403, "forbidden"
    )
    assert_refused(
        ingest.post("/v1/events", json=call("a"), headers=bearer(ops_key)), 403, "forbidden"
    )
    tampered = dialer["key"][:-4] + ("AAAA" if not dialer["key"].endswith("AAAA") else "BBBB")
    assert_refused(
        ingest.post("/v1/events", json=call("t"), headers=bearer(tampered)), 401, "unauthorized"
    )
    events = [call("e-1", "a-1", "t-1"), call("e-2", "a-2", "t-2"), call("e-3", "a-3", "t-2")]
    assert ingest.post("/v1/events", json=events, headers=bearer(dialer["key"])).status_code == 202
    response = ingest.post(
        "/v1/events", json=call("e-4", "a-1", "t-1"), headers={"X-API-Key": dialer["key"]}
    )
    assert response.status_code == 202
    pipeline.wait_caught_up()

    # Read: only read keys; a team-limited key sees its teams and is refused the others.
    params = {**DAY, "group_by": "team", "metrics": "dials"}
    assert_refused(api.get("/v1/metrics", params=params), 401, "unauthorized")
    assert_refused(
        api.get("/v1/metrics", params=params, headers=bearer(dialer["key"])), 403, "forbidden"
    )
    everything = api.get("/v1/metrics", params=params, headers=bearer(board["key"])).json()
    assert {r["team_id"]: r["dials"] for r in everything["rows"]} == {"t-1": 3, "t-2": 2}
    own = api.get("/v1/metrics", params=params, headers=bearer(team_lead["key"])).json()
    assert {r["team_id"]: r["dials"] for r in own["rows"]} == {"t-1": 3}
    by_agent = api.get(
        "/v1/metrics",
        params={**params, "group_by": "agent", "agent_id": "a-2"},
        headers=bearer(team_lead["key"]),
    )
    assert by_agent.json()["rows"] == []
    other = api.get(
        "/v1/metrics", params={**params, "team_id": "t-2"}, headers=bearer(team_lead["key"])
    )
    assert_refused(other, 403, "forbidden")
    # The refusal names no other team: the same for one that does not exist.
    assert other.json()["error"]["details"] == {"field": "team_id"}
    unknown = api.get(
        "/v1/metrics", params={**params, "team_id": "t-9"}, headers=bearer(team_lead["key"])
    )
    assert unknown.json() == other.json()
    board_params: dict[str, Any] = {**DAY, "metric": "dials", "min_volume": 0}
    ranked = api.get(
        "/v1/leaderboard", params=board_params, headers=bearer(team_lead["key"])
    ).json()
    assert [r["agent_id"] for r in ranked["rows"]] == ["a-1"]
    assert_refused(
        api.get(
            "/v1/leaderboard",
            params={**board_params, "team_id": "t-2"},
            headers=bearer(team_lead["key"]),
        ),
        403,
        "forbidden",
    )
    assert_refused(api.get("/v1/leaderboard", params=board_params), 401, "unauthorized")
    # The driver model of an agent of another team holds none of its calls.
    drivers = {**DAY, "reference": "previous_period"}
    theirs = api.get(
        "/v1/drivers", params={**drivers, "agent_id": "a-2"}, headers=bearer(team_lead["key"])
    )
    assert theirs.status_code == 200, theirs.text
    assert not any(d["value"] for d in theirs.json()["drivers"])
    own_driver = api.get(
        "/v1/drivers", params={**drivers, "agent_id": "a-1"}, headers=bearer(team_lead["key"])
    )
    assert own_driver.status_code == 200, own_driver.text
    assert_refused(api.get("/v1/ops/lag"), 401, "unauthorized")
    assert api.get("/v1/ops/lag", headers=bearer(board["key"])).status_code == 200

    # Admin: only admin keys (stored or bootstrap).
    assert_refused(api.get("/v1/admin/keys", headers=bearer(board["key"])), 403, "forbidden")
    assert_refused(
        api.post(
            "/v1/admin/keys", json={"name": "x", "scopes": ["admin"]}, headers=bearer(dialer["key"])
        ),
        403,
        "forbidden",
    )
    listed = api.get("/v1/admin/keys", headers=bearer(ops_key)).json()
    assert {k["name"] for k in listed} == {"dialer", "wallboard", "lead t-1", "ops"}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert next(k for k in listed if k["name"] == "lead t-1")["team_ids"] == ["t-1"]
    bad = api.post(
        "/v1/admin/keys", json={"name": "x", "scopes": ["superuser"]}, headers=bearer(ops_key)
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    # Teams limit read and ingest keys; an admin key has nothing to limit.
    bad = api.post(
        "/v1/admin/keys",
        json={"name": "x", "scopes": ["admin"], "team_ids": ["t-1"]},
        headers=bearer(ops_key),
    )
    assert bad.status_code == 422
    assert_refused(
        api.delete("/v1/admin/keys/000000000000", headers=bearer(ops_key)), 404, "not_found"
    )

    # Health and metrics stay open.
    for client in (ingest, api):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").status_code == 200

    # Revocation: by the API and by the CLI, refused everywhere within the cache time.
    revoked = api.delete(f"/v1/admin/keys/{dialer['key_id']}", headers=bearer(ops_key))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert cli(pipeline, "revoke", board["key_id"]).returncode == 0
    assert (
        "revoked" in cli(pipeline, "list").stdout.lower()
        or board["key_id"] in cli(pipeline, "list").stdout
    )
    settle()
    assert_refused(
        ingest.post("/v1/events", json=call("gone"), headers=bearer(dialer["key"])),
        401,
        "unauthorized",
    )
    assert_refused(
        api.get("/v1/metrics", params=params, headers=bearer(board["key"])), 401, "unauthorized"
    )
    # Revoking every ingest key does not reopen ingest.
    assert_refused(ingest.post("/v1/events", json=call("no-key-2")), 401, "unauthorized")


def test_required_mode_needs_a_key_from_the_start(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(CALLBOARD_AUTH_MODE="required")
    assert_refused(pipeline.ingest.post("/v1/events", json=call("x")), 401, "unauthorized")
    assert_refused(pipeline.api.get("/v1/metrics", params=DAY), 401, "unauthorized")
    assert_refused(pipeline.api.get("/v1/admin/keys"), 401, "unauthorized")
    assert pipeline.ingest.get("/readyz").status_code == 200
    made = cli(pipeline, "create", "--name", "dialer", "--scope", "ingest", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    settle()
    assert (
        pipeline.ingest.post("/v1/events", json=call("x"), headers=bearer(key)).status_code == 202
    )
    assert pipeline.api.get("/v1/metrics", params=DAY, headers=bearer(key)).status_code == 200
    bad = cli(pipeline, "create", "--name", "x", "--scope", "root")
    assert bad.returncode != 0 and "scopes" in bad.stderr


def test_rate_limits_and_request_limits(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(
        CALLBOARD_ADMIN_KEY=ADMIN_KEY,
        CALLBOARD_RATE_LIMIT_PER_SECOND="2",
        CALLBOARD_RATE_LIMIT_BURST="3",
        CALLBOARD_MAX_EVENTS_PER_REQUEST="5",
        CALLBOARD_MAX_BODY_BYTES="4096",
    )
    ingest, api = pipeline.ingest, pipeline.api

    # Open route: per client address. A burst of 3, then 429 with Retry-After.
    answers = [ingest.post("/v1/events", json=call(f"r-{i}")) for i in range(4)]
    assert [r.status_code for r in answers[:3]] == [202, 202, 202]
    limited = answers[3]
    assert_refused(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    time.sleep(1.1)
    assert ingest.post("/v1/events", json=call("r-after")).status_code == 202

    # Per key: one key's burst does not spend another's.
    one = create_key(pipeline, ADMIN_KEY, name="one", scopes=["read"])
    two = create_key(pipeline, ADMIN_KEY, name="two", scopes=["read"])
    statuses = [api.get("/v1/ops/lag", headers=bearer(one["key"])).status_code for _ in range(5)]
    assert 429 in statuses
    assert api.get("/v1/ops/lag", headers=bearer(two["key"])).status_code == 200

    # Request limits: events per request, body size, string lengths, personal data.
    time.sleep(2)
    too_many = ingest.post("/v1/events", json=[call(f"m-{i}") for i in range(6)])
    assert_refused(too_many, 413, "payload_too_large")
    too_big = ingest.post("/v1/events", json=call("big", source="s" * 5000))
    assert_refused(too_big, 413, "payload_too_large")
    time.sleep(1.5)
    long_id = ingest.post("/v1/events", json=call("long", agent="a" * 65))
    assert long_id.status_code == 422
    assert long_id.json()["rejected"][0]["errors"][0]["field"] == "agent_id"
    personal = [
        call("p-1", lead_id="+86 139 1234 5678"),
        call("p-2", agent="agent@example.com"),
        {**call("p-3"), "customer_phone": "13912345678"},
    ]
    time.sleep(1.5)
    response = ingest.post("/v1/events", json=personal)
    assert response.status_code == 422, response.text
    messages = [r["errors"][0]["message"] for r in response.json()["rejected"]]
    assert "phone number or e-mail" in messages[0]
    assert "phone number or e-mail" in messages[1]
    assert "personal data" in messages[2]
