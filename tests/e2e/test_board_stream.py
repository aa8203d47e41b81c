"""The wallboard's stream: every parameter checked before it starts, the boards of a floor
sharing one key all let in at once, a revoked key's stream ended, status every few seconds."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.pipeline import REPO, MakePipeline, Pipeline, bearer, create_key

ADMIN_KEY = "bootstrap-admin-key-for-the-board-tests-0123"
CACHE_SECONDS = 2.0


@contextmanager
def status_stream(pipeline: Pipeline, key: str) -> Iterator[httpx.Response]:
    """A board's stream of the status view alone, open (200 asserted)."""
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream(
            "GET", stream_url(pipeline), params={"views": "status"}, headers=bearer(key)
        ) as response,
    ):
        assert response.status_code == 200
        yield response


def stream_url(pipeline: Pipeline) -> str:
    return f"{str(pipeline.api.base_url).rstrip('/')}/v1/stream"


def read_events(
    lines: Iterator[str], until: float, stop_after: int | None = None
) -> tuple[list[tuple[float, str, Any]], bool]:
    """The events of an open stream's lines until ``until`` (monotonic) or ``stop_after`` events;
    and whether the server ended the stream."""
    events: list[tuple[float, str, Any]] = []
    name = ""
    while time.monotonic() < until:
        try:
            line = next(lines)
        except StopIteration:
            return events, True
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((time.monotonic(), name, json.loads(line.removeprefix("data: "))))
            if stop_after is not None and len(events) >= stop_after:
                return events, False
    return events, False


@pytest.fixture
def board_pipeline(make_pipeline: MakePipeline) -> Pipeline:
    return make_pipeline(
        CALLBOARD_ADMIN_KEY=ADMIN_KEY,
        CALLBOARD_AUTH_CACHE_SECONDS=str(CACHE_SECONDS),
        # A tight per-request limit: streams must not be counted by it.
        CALLBOARD_RATE_LIMIT_PER_SECOND="1",
        CALLBOARD_RATE_LIMIT_BURST="5",
        CALLBOARD_STREAMS_PER_KEY="40",
    )


def test_bad_stream_parameters_answer_422_before_the_stream(board_pipeline: Pipeline) -> None:
    key = create_key(board_pipeline, ADMIN_KEY, name="board", scopes=["read"])["key"]
    bad = [
        {"leaderboard": "dispositions"},
        {"leaderboard": "no_such_kpi"},
        {"views": "metrics,gossip"},
        {"views": ","},
        {"metrics": "dials,nothing"},
        {"group_by": "floor"},
        {"from": "yesterday"},
        {"limit": "0"},
    ]
    for params in bad:
        with httpx.Client(timeout=10) as client:
            response = client.get(stream_url(board_pipeline), params=params, headers=bearer(key))
        assert response.status_code == 422, (params, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert set(response.json()) == {"error"}, response.text
        assert response.json()["error"]["code"] in ("invalid_input", "validation_error")


def test_boards_sharing_one_key_all_get_in_and_a_bound_holds(board_pipeline: Pipeline) -> None:
    key = create_key(board_pipeline, ADMIN_KEY, name="floor tvs", scopes=["read"])["key"]
    url = stream_url(board_pipeline)
    boards = 40  # eight times the key's burst of 5 requests
    clients = [httpx.Client(timeout=httpx.Timeout(10, read=30)) for _ in range(boards + 1)]
    opened: list[httpx.Response] = []
    lock = threading.Lock()

    def connect(client: httpx.Client) -> int:
        request = client.build_request(
            "GET", url, params={"views": "metrics,status"}, headers=bearer(key)
        )
        response = client.send(request, stream=True)
        with lock:
            opened.append(response)
        return response.status_code

    try:
        with ThreadPoolExecutor(boards) as pool:
            statuses = list(pool.map(connect, clients[:boards]))
        assert statuses == [200] * boards
        # The 41st stream of the key is over the bound of open streams.
        extra = connect(clients[boards])
        assert extra == 429
        assert opened[-1].headers["retry-after"] == "5"
        # The per-request limit still holds for ordinary requests of the key.
        answers = [
            board_pipeline.api.get("/v1/metrics", headers=bearer(key)).status_code for _ in range(8)
        ]
        assert 429 in answers
    finally:
        for response in opened:
            response.close()
        for client in clients:
            client.close()
    # Closed streams give their slots back.
    deadline = time.monotonic() + 10
    while True:
        with httpx.Client(timeout=10) as client:
            request = client.build_request(
                "GET", url, params={"views": "status"}, headers=bearer(key)
            )
            response = client.send(request, stream=True)
            status = response.status_code
            response.close()
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200


def test_a_revoked_keys_stream_ends_within_the_cache_time(board_pipeline: Pipeline) -> None:
    created = create_key(board_pipeline, ADMIN_KEY, name="tv 7", scopes=["read"])
    with status_stream(board_pipeline, created["key"]) as response:
        lines = response.iter_lines()
        first, ended = read_events(lines, time.monotonic() + 10, stop_after=1)
        assert [name for _, name, _ in first] == ["status"] and not ended
        # Revoked straight in the database, as `callboard keys revoke` does: the API learns
        # of it only by reading the key table again.
        revoked = subprocess.run(
            [sys.executable, "-m", "services.cli", "keys", "revoke", created["key_id"]],
            cwd=REPO,
            env=board_pipeline.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert revoked.returncode == 0, revoked.stderr
        at = time.monotonic()
        events, ended = read_events(lines, at + CACHE_SECONDS + 5)
    assert ended, events
    last_at, name, body = events[-1]
    assert name == "error"
    assert body["data"]["code"] == "unauthorized"
    # Within the cache time, plus the one second between two looks at the key.
    assert last_at - at <= CACHE_SECONDS + 1.5, last_at - at
    # And the key gets no new stream.
    again = board_pipeline.api.get("/v1/stream", headers=bearer(created["key"]))
    assert again.status_code == 401


def test_status_comes_at_least_every_five_seconds(board_pipeline: Pipeline) -> None:
    key = create_key(board_pipeline, ADMIN_KEY, name="tv", scopes=["read"])["key"]
    with status_stream(board_pipeline, key) as response:
        lines = response.iter_lines()
        events, _ = read_events(lines, time.monotonic() + 12, stop_after=3)
    assert [name for _, name, _ in events] == ["status"] * 3
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
    assert all(gap <= 5.5 for gap in gaps), gaps
    for _, _, body in events:
        status = body["data"]
        assert set(status) == {"last_commit_at", "lag_status", "sent_at"}
        assert status["lag_status"] in ("ok", "warning", "stalled", "error")
        # Nothing has been committed on this topic yet.
        assert status["last_commit_at"] is None


def _counter(pipeline: Pipeline, name: str) -> float:
    text = pipeline.api.get("/metrics").text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name}_total ")
    )


def _stream_work(
    pipeline: Pipeline,
    key: str,
    params: dict[str, str],
    *,
    boards: int,
    change: Callable[[], None],
) -> tuple[float, float, int]:
    """With ``boards`` streams open, make ``change``: the commits the API saw, the views it
    computed, and how many quiet looks (one per 5 s) the time taken allows."""
    clients = [httpx.Client(timeout=httpx.Timeout(10, read=30)) for _ in range(boards)]
    responses = []
    try:
        for client in clients:
            request = client.build_request(
                "GET", stream_url(pipeline), params=params, headers=bearer(key)
            )
            responses.append(client.send(request, stream=True))
        assert [r.status_code for r in responses] == [200] * boards
        commits = _counter(pipeline, "callboard_api_stream_commits")
        computed = _counter(pipeline, "callboard_api_stream_view_computations")
        started = time.monotonic()
        change()
        pipeline.wait_caught_up()
        time.sleep(2)
        new_commits = _counter(pipeline, "callboard_api_stream_commits") - commits
        new_views = _counter(pipeline, "callboard_api_stream_view_computations") - computed
        quiet_looks = math.ceil((time.monotonic() - started) / 5) + 1
    finally:
        for response in responses:
            response.close()
        for client in clients:
            client.close()
    return new_commits, new_views, quiet_looks


def test_database_work_follows_the_commits_not_the_boards(board_pipeline: Pipeline) -> None:
    key = create_key(board_pipeline, ADMIN_KEY, name="floor", scopes=["read"])["key"]
    params = {"views": "metrics,leaderboard,sale,pace"}  # three shared views

    def calls_start() -> None:
        at = datetime.now(UTC).isoformat()
        board_pipeline.post(
            [
                {
                    "event_id": f"w-{i}",
                    "type": "call.started",
                    "occurred_at": at,
                    "agent_id": "w1",
                    "call_id": f"w-call-{i}",
                    "lead_id": f"L{i}",
                }
                for i in range(3)
            ]
        )

    new_commits, new_views, quiet_looks = _stream_work(
        board_pipeline, key, params, boards=20, change=calls_start
    )
    assert new_commits >= 1
    # Three views per commit for all twenty boards (and one more look at the metrics per
    # quiet 5 s), not three per board.
    assert new_views <= 3 * new_commits + quiet_looks, (new_views, new_commits, quiet_looks)


def test_team_leaderboards_on_the_stream_equal_each_teams_leaderboard(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(CALLBOARD_ADMIN_KEY=ADMIN_KEY)
    key = create_key(pipeline, ADMIN_KEY, name="floor", scopes=["read"])["key"]
    team_key = create_key(pipeline, ADMIN_KEY, name="t-b tv", scopes=["read"], team_ids=["t-b"])[
        "key"
    ]
    # Sales today: agent -> (team, count); counts chosen with a tie in team t-a.
    plan = {
        "a1": ("t-a", 3),
        "a2": ("t-a", 1),
        "a3": ("t-a", 3),
        "b1": ("t-b", 2),
        "b2": ("t-b", 5),
    }
    at = datetime.now(UTC).isoformat()
    events = []
    for agent, (team, count) in plan.items():
        for n in range(count):
            events.append(
                {
                    "event_id": f"s-{agent}-{n}",
                    "type": "sale.closed",
                    "occurred_at": at,
                    "agent_id": agent,
                    "team_id": team,
                    "lead_id": f"L-{agent}-{n}",
                    "order_id": f"o-{agent}-{n}",
                    "amount": "10.00",
                }
            )
    pipeline.post(events)
    pipeline.wait_caught_up()

    def first_leaderboard(search: dict[str, str], with_key: str) -> Any:
        with httpx.Client(timeout=httpx.Timeout(10, read=30)) as client:
            request = client.build_request(
                "GET", stream_url(pipeline), params=search, headers=bearer(with_key)
            )
            response = client.send(request, stream=True)
            try:
                assert response.status_code == 200, response.read()
                found, _ = read_events(response.iter_lines(), time.monotonic() + 10, stop_after=1)
            finally:
                response.close()
        assert [name for _, name, _ in found] == ["leaderboard"]
        return found[0][2]["data"]

    search = {"views": "leaderboard", "leaderboard": "sales", "leaderboard_by": "team"}
    got = first_leaderboard(search, key)
    assert got["metric"] == "sales" and got["by"] == "team"
    assert [t["team_id"] for t in got["teams"]] == ["t-a", "t-b"]
    for team in got["teams"]:
        truth = {a: c for a, (t, c) in plan.items() if t == team["team_id"]}
        ranks = {a: 1 + sum(o > c for o in truth.values()) for a, c in truth.items()}
        assert {r["agent_id"]: (r["rank"], int(r["value"])) for r in team["rows"]} == {
            a: (ranks[a], c) for a, c in truth.items()
        }
        answer = pipeline.api.get(
            "/v1/leaderboard",
            params={"metric": "sales", "period": "today", "limit": 10, "team_id": team["team_id"]},
            headers=bearer(key),
        ).json()
        assert team["rows"] == answer["rows"]
        assert (team["from"], team["to"]) == (answer["from"], answer["to"])

    # A key of one team gets that team's list only; the plain leaderboard is as before.
    limited = first_leaderboard(search, team_key)
    assert [t["team_id"] for t in limited["teams"]] == ["t-b"]
    assert [r["agent_id"] for r in limited["teams"][0]["rows"]] == ["b2", "b1"]
    plain = first_leaderboard({"views": "leaderboard", "leaderboard": "sales"}, key)
    assert "teams" not in plain
    assert [r["agent_id"] for r in plain["rows"]] == ["b2", "a1", "a3", "b1", "a2"]

    with httpx.Client(timeout=10) as client:
        bad = client.get(
            stream_url(pipeline), params={**search, "leaderboard_by": "agent"}, headers=bearer(key)
        )
    assert bad.status_code == 422, bad.text

    # Ten boards of the floor: one computation of every team's list per commit, not ten.
    sale = {**events[0], "event_id": "s-more", "order_id": "o-more", "lead_id": "L-more"}

    def one_more_sale() -> None:
        pipeline.post([{**sale, "occurred_at": datetime.now(UTC).isoformat()}])

    new_commits, new_views, quiet_looks = _stream_work(
        pipeline, key, search, boards=10, change=one_more_sale
    )
    assert new_commits >= 1
    assert new_views <= new_commits + quiet_looks, (new_views, new_commits, quiet_looks)
