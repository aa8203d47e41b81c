"""Live updates: a wallboard's stream gets new numbers within a second of the commit."""

from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime
from typing import Any

from tests.pipeline import Pipeline
from tests.sse import listen, next_event


def test_wallboard_stream_follows_the_commits(any_pipeline: Pipeline) -> None:
    events: queue.Queue[tuple[float, str, Any]] = queue.Queue()
    stop = threading.Event()
    params = {"metrics": "dials,sales", "period": "today", "leaderboard": "dials"}
    listener = threading.Thread(
        target=listen,
        args=(f"{str(any_pipeline.api.base_url).rstrip('/')}/v1/stream", params, events, stop),
        daemon=True,
    )
    listener.start()
    _, first = next_event(events, "metrics", lambda d: True, 20)
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
    received, update = next_event(events, "metrics", lambda d: d["rows"][0]["dials"] == 3, 20)
    _, board = next_event(events, "leaderboard", lambda d: len(d["rows"]) == 2, 5)
    assert [(r["agent_id"], r["value"]) for r in board["data"]["rows"]] == [("w0", 2), ("w1", 1)]
    if any_pipeline.database_url.startswith("postgresql"):
        committed = datetime.fromisoformat(update["as_of"]["commit_at"]).timestamp()
        assert received - committed < 1.0, f"pushed {received - committed:.3f} s after the commit"
    stop.set()
