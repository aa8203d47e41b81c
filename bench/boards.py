"""Wallboard benchmark: one API process, 1, 100 and 500 boards on one display key.

Each board is an SSE client of the board's views (``/v1/stream?views=metrics,leaderboard,
agents,sale,pace,status``), all with the same key and parameters, as the TVs of one floor.
The boards connect all at once (every one must be let in: none refused with 429); then a
sale is posted every ``--interval`` seconds for ``--seconds``, with floor traffic beside it,
and the benchmark measures:

- push delay: from the aggregator's commit that counts a sale (the commit time it
  announces) to each board receiving that sale's ``sale`` event, p50/p99 over boards and
  sales; and that every board got every sale exactly once;
- the API process's CPU (user + system time over wall time);
- database queries per commit: the API's statement counter over the commits its change
  feed learned of (``/metrics``), with the stream view computations per commit.

Kafka and PostgreSQL come from ``CALLBOARD_BENCH_KAFKA_BOOTSTRAP_SERVERS`` and
``CALLBOARD_BENCH_DATABASE_URL`` when set, else are started locally like the tests do.
Run: ``python -m bench.boards``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.pipeline import Stack, _fresh_database, _say, bench_infrastructure
from shared.kafka import ensure_topic

ADMIN_KEY = "bench-admin-key-0123456789-0123456789-abcdef"
VIEWS = "metrics,leaderboard,agents,sale,pace,status"
AGENTS = 60
TEAMS = 4


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _floor_events(count: int, seed: int) -> list[dict[str, Any]]:
    """Calls and state changes of a floor of AGENTS agents in TEAMS teams, happening now."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(count):
        agent = rng.randrange(AGENTS)
        common = {"agent_id": f"ag-{agent}", "team_id": f"t-{agent % TEAMS}"}
        tag = f"{seed}-{i}"
        if rng.random() < 0.2:
            state = rng.choice(["available", "on_call", "wrap_up", "paused"])
            events.append(
                {
                    "event_id": f"st-{tag}",
                    "type": "agent.state_changed",
                    "occurred_at": _now(),
                    "state": state,
                    **({"reason": "break"} if state == "paused" else {}),
                    **common,
                }
            )
        else:
            events.append(
                {
                    "event_id": f"c-{tag}",
                    "type": "call.completed",
                    "occurred_at": _now(),
                    "call_id": f"call-{tag}",
                    "lead_id": f"L-{rng.randrange(5000)}",
                    "answered": rng.random() < 0.4,
                    "talk_seconds": rng.randrange(200),
                    **common,
                }
            )
    return events


def _sale(order: str) -> dict[str, Any]:
    agent = random.randrange(AGENTS)
    return {
        "event_id": f"sale-{order}",
        "type": "sale.closed",
        "occurred_at": _now(),
        "agent_id": f"ag-{agent}",
        "team_id": f"t-{agent % TEAMS}",
        "lead_id": f"L-{order}",
        "order_id": order,
        "amount": f"{random.randrange(100, 5000)}.00",
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _counter(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[-1])
    return 0.0


class Board:
    """One TV: an SSE client noting when each sale arrives and the commit that counted it.
    Only ``sale`` events are parsed: the client's own work should not be what is measured."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.sales: dict[str, tuple[float, float]] = {}  # order -> (received, committed)
        self.duplicates = 0
        self.ready = asyncio.Event()

    async def run(self, client: httpx.AsyncClient, url: str, key: str) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        params = {"views": VIEWS, "leaderboard": "sales"}
        async with client.stream("GET", url, params=params, headers=headers) as response:
            self.status = response.status_code
            self.ready.set()
            if response.status_code != 200:
                return
            buffer = b""
            async for chunk in response.aiter_raw():
                received = time.time()
                buffer += chunk
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    if event.startswith(b"event: sale\n"):
                        self._sale(event, received)

    def _sale(self, event: bytes, received: float) -> None:
        data = event.split(b"\ndata: ", 1)[1]
        body = orjson.loads(data)
        order = body["data"]["order_id"]
        committed = datetime.fromisoformat(body["as_of"]["commit_at"]).timestamp()
        if order in self.sales:
            self.duplicates += 1
        self.sales[order] = (received, committed)


def _boards(url: str, key: str, count: int, ready: Any, stop: Any, results: Any) -> None:
    """A client process holding ``count`` boards until ``stop`` is set."""

    async def hold() -> None:
        limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60), limits=limits) as client:
            tvs = [Board() for _ in range(count)]
            started = time.monotonic()
            tasks = [asyncio.create_task(tv.run(client, url, key)) for tv in tvs]
            await asyncio.wait_for(asyncio.gather(*(tv.ready.wait() for tv in tvs)), 120)
            ready.put(([tv.status for tv in tvs], time.monotonic() - started))
            while not stop.is_set():
                await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            results.put(
                [{"sales": tv.sales, "duplicates": tv.duplicates} for tv in tvs if tv.status == 200]
            )

    asyncio.run(hold())


def measure(
    stack: Stack, key: str, boards: int, seconds: float, interval: float, processes: int
) -> None:
    url = f"{stack.api_url}/v1/stream"
    context = multiprocessing.get_context("spawn")
    ready, results, stop = context.Queue(), context.Queue(), context.Event()
    shares = [boards // processes + (i < boards % processes) for i in range(processes)]
    workers = [
        context.Process(target=_boards, args=(url, key, n, ready, stop, results))
        for n in shares
        if n
    ]
    for worker in workers:
        worker.start()
    answers = [ready.get(timeout=180) for _ in workers]
    statuses = [status for answer in answers for status in answer[0]]
    connected = max(answer[1] for answer in answers)
    refused = [status for status in statuses if status != 200]
    api_pid = stack.processes["api"].pid
    before_metrics = httpx.get(f"{stack.api_url}/metrics").text
    cpu_before, wall_before = _cpu_seconds(api_pid), time.monotonic()
    run = uuid.uuid4().hex[:6]
    posted: list[str] = []
    with httpx.Client(base_url=stack.ingest_url, timeout=30) as ingest:
        while time.monotonic() - wall_before < seconds:
            order = f"o-{run}-{len(posted)}"
            events = [_sale(order), *_floor_events(20, hash((run, len(posted))) & 0xFFFF)]
            response = ingest.post("/v1/events", content=orjson.dumps(events))
            assert response.status_code == 202, response.text
            posted.append(order)
            time.sleep(interval)
    time.sleep(3)  # the last sale's pushes
    cpu = _cpu_seconds(api_pid) - cpu_before
    wall = time.monotonic() - wall_before
    after_metrics = httpx.get(f"{stack.api_url}/metrics").text
    stop.set()
    tvs = [tv for _ in workers for tv in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=30)

    def delta(name: str) -> float:
        return _counter(after_metrics, name) - _counter(before_metrics, name)

    delays = sorted(
        received - committed
        for tv in tvs
        for order, (received, committed) in tv["sales"].items()
        if order in posted
    )
    missing = sum(1 for tv in tvs for order in posted if order not in tv["sales"])
    duplicates = sum(tv["duplicates"] for tv in tvs)
    commits = delta("callboard_api_stream_commits")
    queries = delta("callboard_api_database_queries")
    computations = delta("callboard_api_stream_view_computations")
    p50 = statistics.median(delays) if delays else float("nan")
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else float("nan")
    _say(
        f"{boards:>4} boards: connected in {connected:.1f} s, refused {len(refused)}; "
        f"{len(posted)} sales: push delay p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {delays[-1] * 1000 if delays else float('nan'):.0f} ms; missing {missing}, "
        f"twice {duplicates}; API CPU {100 * cpu / wall:.0f} % of a core; "
        f"{commits:.0f} commits, {queries / max(commits, 1):.1f} queries and "
        f"{computations / max(commits, 1):.1f} view computations per commit; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--seconds", type=float, default=30, help="posting time per step")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between sales")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    args = parser.parse_args()

    with bench_infrastructure("callboard-bench-boards-") as (workdir, bootstrap, base_url):
        _say(f"kafka {bootstrap}; cores {os.cpu_count()}")
        topic = f"bench-boards-{uuid.uuid4().hex[:8]}"
        database_url = _fresh_database(base_url)
        ensure_topic([bootstrap], topic, 3)
        stack = Stack(bootstrap, database_url, topic, workdir)
        stack.env["CALLBOARD_ADMIN_KEY"] = ADMIN_KEY
        try:
            stack.start_http("ingest", stack.ingest_url)
            stack.start("aggregator", "aggregator")
            stack.start_http("api", stack.api_url)
            created = httpx.post(
                f"{stack.api_url}/v1/admin/keys",
                json={"name": "floor tvs", "scopes": ["read"]},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            created.raise_for_status()
            key = created.json()["key"]
            floor = _floor_events(3000, 1)
            httpx.post(f"{stack.ingest_url}/v1/events", content=orjson.dumps(floor), timeout=60)
            time.sleep(5)
            for boards in args.boards:
                measure(stack, key, boards, args.seconds, args.interval, args.processes)
        finally:
            stack.stop_all()
            _drop_database(base_url, database_url)


def _drop_database(base_url: str, database_url: str) -> None:
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(database_url).database}"'))
    admin.dispose()


if __name__ == "__main__":
    main()
