"""Read latency: /v1/metrics and /v1/leaderboard over a month of a large floor.

Loads a month of a simulated floor (200 agents by default) into Kafka, lets the aggregators
apply it, then times repeated reads through the API and prints p50/p99 per query. The load
goes straight to the topic (the ingest path is measured by ``bench/pipeline.py``).

Kafka and PostgreSQL come from ``CALLBOARD_BENCH_KAFKA_BOOTSTRAP_SERVERS`` and
``CALLBOARD_BENCH_DATABASE_URL`` when set, else are started locally.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson
from sqlalchemy import create_engine

from bench.pipeline import Stack, _fresh_database, _say, bench_infrastructure
from devstack.simulator import FloorShape, FloorSimulator
from services.api.metrics import queries
from services.api.metrics.periods import Granularity, TimeRange
from services.api.metrics.queries import Filters, Query
from services.api.settings import ApiSettings
from shared.kafka import ensure_topic, kafka_producer
from shared.kpis import LEAD_COUNT_KEYS
from shared.timeutil import floor_minute

QUERIES: dict[str, tuple[str, dict[str, str | int]]] = {
    "metrics mtd by agent (default KPIs)": ("/v1/metrics", {"period": "mtd", "group_by": "agent"}),
    "metrics mtd floor, by day": ("/v1/metrics", {"period": "mtd", "granularity": "day"}),
    "metrics today by team": ("/v1/metrics", {"period": "today", "group_by": "team"}),
    "metrics mtd counters only by agent": (
        "/v1/metrics",
        {
            "period": "mtd",
            "group_by": "agent",
            "metrics": "dials,connects,talk_seconds,sales,revenue",
        },
    ),
    "leaderboard mtd revenue": ("/v1/leaderboard", {"period": "mtd", "metric": "revenue"}),
    "leaderboard mtd contact_rate": (
        "/v1/leaderboard",
        {"period": "mtd", "metric": "contact_rate", "min_volume": 0},
    ),
    # A rolling window: distinct leads summed from the latest-fact tables.
    "metrics last_24h by agent": (
        "/v1/metrics",
        {"period": "last_24h", "group_by": "agent"},
    ),
    "metrics today by hour": (
        "/v1/metrics",
        {"period": "today", "granularity": "hour"},
    ),
    "leaderboard today connect_rate": (
        "/v1/leaderboard",
        {"period": "today", "metric": "connect_rate", "min_volume": 0},
    ),
}


def load(stack: Stack, events: int, shape: FloorShape) -> int:
    simulator = FloorSimulator(shape, seed=3)
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max(now - month_start - timedelta(minutes=10), timedelta(hours=1))
    producer = kafka_producer(
        bootstrap=stack.bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024
    )
    started = time.perf_counter()
    sent = 0
    for event in simulator.events(events, month_start, span, in_order=True):
        key = str(event.get("agent_id") or event.get("call_id")).encode()
        producer.send(stack.topic, key=key, value=orjson.dumps(event))
        sent += 1
        if sent % 250_000 == 0:
            _say(f"  loaded {sent:,} events ({sent / (time.perf_counter() - started):,.0f}/s)")
    producer.flush()
    producer.close()
    return sent


def check_lead_counts(database_url: str) -> None:
    """Distinct leads summed from ``lead_count_day``, ``lead_count_hour`` and the latest-fact
    tables against the same counted from the facts, for the ranges and scopes the timed reads
    use (by hour: today; the rolling windows as a whole)."""
    zone = ZoneInfo(ApiSettings().timezone)
    today = datetime.now(zone).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=zone)
    month = midnight.replace(day=1)
    week = midnight - timedelta(days=today.weekday())
    tomorrow = midnight + timedelta(days=1)
    ranges = {
        "today": TimeRange(midnight, tomorrow),
        "wtd": TimeRange(week, tomorrow),
        "mtd": TimeRange(month, tomorrow),
        "before mtd": TimeRange(month - (tomorrow - month), month),
    }
    minute_end = floor_minute(datetime.now(UTC)) + timedelta(minutes=1)
    rolling = {
        "last_24h": TimeRange(minute_end - timedelta(hours=24), minute_end),
        "last_1h": TimeRange(minute_end - timedelta(hours=1), minute_end),
    }
    engine = create_engine(database_url)
    rows = differences = 0
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            for name, rng in (ranges | rolling).items():
                for group in ((), ("agent",), ("team",), ("team", "campaign")):
                    granularities = [Granularity.none]
                    if name in ranges:
                        granularities.append(Granularity.day)
                    if name == "today":
                        granularities.append(Granularity.hour)
                    for granularity in granularities:
                        query = Query(group, granularity, rng, Filters(key_teams=None), zone)
                        summed = queries.lead_counts(connection, LEAD_COUNT_KEYS, query)
                        counted = queries.lead_counts(
                            connection, LEAD_COUNT_KEYS, query, sums=False
                        )
                        rows += len(counted)
                        differences += len(summed.keys() ^ counted.keys()) + sum(
                            summed[k] != v for k, v in counted.items() if k in summed
                        )
                        if summed != counted:
                            _say(f"  differs: {name} by {group or 'floor'}, {granularity}")
    finally:
        engine.dispose()
    seconds = time.perf_counter() - started
    _say(f"lead counts: {rows:,} rows checked against the facts, {differences} differences")
    _say(f"  ({seconds:.0f} s, most of it counting from the facts)")


def time_reads(stack: Stack, requests: int) -> None:
    stack.start_http("api", stack.api_url)
    # The reads go to open routes, limited per client address: starting them no closer
    # than the limit allows keeps them all answered, as a polite client's would be.
    rate = ApiSettings().rate_limit_per_second
    spacing = 1.0 / (rate * 0.9) if rate > 0 else 0.0
    with httpx.Client(base_url=stack.api_url, timeout=120) as client:
        for name, (path, params) in QUERIES.items():
            client.get(path, params=params).raise_for_status()  # warm caches
            timings = []
            next_start = time.perf_counter()
            for _ in range(requests):
                pause = next_start - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                t0 = time.perf_counter()
                next_start = t0 + spacing
                client.get(path, params=params).raise_for_status()
                timings.append(time.perf_counter() - t0)
            timings.sort()
            p50 = statistics.median(timings) * 1000
            p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1000
            _say(f"{name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({requests} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--agents-per-team", type=int, default=20)
    parser.add_argument("--aggregators", type=int, default=2)
    parser.add_argument(
        "--leads-per-agent",
        type=int,
        default=1500,
        help="leads each agent works in the month (each dialed about 4 times)",
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--reuse",
        metavar="DATABASE_URL",
        help="time the reads on a database an earlier run loaded (its URL is printed)",
    )
    args = parser.parse_args()
    if args.reuse:
        workdir = Path(tempfile.mkdtemp(prefix="callboard-bench-"))
        stack = Stack("127.0.0.1:9", args.reuse, "unused", workdir)
        try:
            time_reads(stack, args.requests)
            check_lead_counts(args.reuse)
        finally:
            stack.stop_all()
            shutil.rmtree(workdir, ignore_errors=True)
        return

    with bench_infrastructure("callboard-bench-") as (workdir, bootstrap, base_url):
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        ensure_topic([bootstrap], topic, 6)
        stack = Stack(bootstrap, _fresh_database(base_url), topic, workdir)
        try:
            _say(f"loading {args.events:,} events of {args.teams * args.agents_per_team} agents")
            shape = FloorShape(
                teams=args.teams,
                agents_per_team=args.agents_per_team,
                leads_per_agent=args.leads_per_agent,
            )
            sent = load(stack, args.events, shape)
            started = time.perf_counter()
            for n in range(args.aggregators):
                stack.start(f"aggregator-{n}", "aggregator")
            while stack.applied() < sent:
                time.sleep(5)
                done = stack.applied()
                rate = done / (time.perf_counter() - started)
                _say(f"  applied {done:,} / {sent:,} ({rate:,.0f}/s)")
            _say(f"aggregated {sent:,} events in {time.perf_counter() - started:.0f} s")
            _say(f"database: {stack.database_url} (time again with --reuse)")
            time_reads(stack, args.requests)
            check_lead_counts(stack.database_url)
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
