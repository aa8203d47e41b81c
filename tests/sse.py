"""Reading the live stream (Server-Sent Events) in tests: a listener thread fills a queue."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx


def listen(
    url: str,
    params: dict[str, Any],
    out: queue.Queue[tuple[float, str, Any]],
    stop: threading.Event,
) -> None:
    """Put each event of the stream on ``out``; a failure is put there too, as ``ERROR``."""
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=30)) as client,
            client.stream("GET", url, params=params) as response,
        ):
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            name = None
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    out.put((time.time(), name or "", json.loads(line.removeprefix("data: "))))
    except Exception as exc:  # the reader's test sees it, not the thread's end
        if not stop.is_set():
            out.put((time.time(), ERROR, exc))


ERROR = "listener failed"


def next_event(
    events: queue.Queue[tuple[float, str, Any]], name: str, predicate: Any, timeout: float
) -> tuple[float, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            received, event, body = events.get(timeout=0.5)
        except queue.Empty:
            continue
        if event == ERROR:
            raise AssertionError(f"the stream failed while waiting for {name}") from body
        if event == name and predicate(body["data"]):
            return received, body
    raise AssertionError(f"no {name} event matching in {timeout} s")
