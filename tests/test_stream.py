"""Live updates: a wallboard's stream gets new numbers within a second of the commit."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.pipeline import Pipeline

pytestmark = pytest.mark.pipeline


def _listen(
    url: str,
    params: dict[str, Any],
    out: queue.Queue[tuple[float, str, Any]],
    stop: threading.Event,
) -> None:
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=30)) as client,
        client.stream("GET", url, params=params) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.put((time.time(), name or "", json.loads(line.removeprefix("data: "))))


def _next(
    events: queue.Queue[tuple[float, str, Any]], name: str, predicate: Any, timeout: float
) -> tuple[float, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            received, event, body = events.get(timeout=0.5)
        except queue.Empty:
            continue
        if event == name and predicate(body["data"]):
            return received, body
    raise AssertionError(f"no {name} event matching in {timeout} s")


def test_wallboard_stream_follows_the_commits(any_pipeline: Pipeline) -> None:
    events: queue.Queue[tuple[float, str, Any]] = queue.Queue()
    stop = threading.Event()
    params = {"metrics": "dials,sales", "period": "today", "leaderboard": "dials"}
    listener = threading.Thread(
        target=_listen,
        args=(f"{str(any_pipeline.api.base_url).rstrip('/')}/v1/stream", params, events, stop),
        daemon=True,
    )
    listener.start()
    _, first = _next(events, "metrics", lambda d: True, 20)
    assert first["data"]["rows"] == [{"dials": 0, "sales": 0}]

    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    any_pipeline.post(
        [
            {
                "event_id": f"live-{i}",
                "type": "call.started",
                "occurred_at": now,
                "agent_id": f"w{i % 2}",
                "call_id": f"live-call-{i}",
                "lead_id": f"L{i}",
            }
            for i in range(3)
        ]
    )
    received, update = _next(events, "metrics", lambda d: d["rows"][0]["dials"] == 3, 20)
    _, board = _next(events, "leaderboard", lambda d: len(d["rows"]) == 2, 5)
    assert [(r["agent_id"], r["value"]) for r in board["data"]["rows"]] == [("w0", 2), ("w1", 1)]
    if any_pipeline.database_url.startswith("postgresql"):
        committed = datetime.fromisoformat(update["as_of"]["commit_at"]).timestamp()
        assert received - committed < 1.0, f"pushed {received - committed:.3f} s after the commit"
    stop.set()
