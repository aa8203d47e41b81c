"""Pipeline benchmark: a synthetic floor through the real stack, figures printed.

0. the ceiling: records/s kafka-python itself produces (acks=all, idempotent, as ingest
   sends) and consumes (nothing done with them) on the same broker, in the same run; the
   pipeline's figures below are printed as shares of these;
1. ingest: events/s that ``POST /v1/events`` acknowledges (202: stored in Kafka), with the
   aggregator stopped;
2. aggregator: events/s from the topic into the KPI tables, from the first batch to the
   last, with 1..N aggregator processes, and events per aggregator CPU-second;
3. freshness: at a steady posting rate, the time from an event's 202 until the read API
   shows it, p50/p99.

Kafka and PostgreSQL come from ``CALLBOARD_BENCH_KAFKA_BOOTSTRAP_SERVERS`` and
``CALLBOARD_BENCH_DATABASE_URL`` when set, else are started locally like the tests do.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from kafka.structs import TopicPartition
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.adapters import _cpu_seconds
from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresCluster
from devstack.processes import free_port
from devstack.simulator import FloorShape, FloorSimulator
from services.aggregator.consumer import FETCH_PARTITION_BYTES
from services.aggregator.settings import AggregatorSettings
from services.ingest.settings import IngestSettings
from shared.db import upgrade_database
from shared.kafka import ensure_topic, kafka_consumer, kafka_producer

REPO = Path(__file__).resolve().parent.parent


def _say(message: str) -> None:
    print(message, flush=True)


class Stack:
    def __init__(self, bootstrap: str, database_url: str, topic: str, workdir: Path) -> None:
        self.env = {
            **os.environ,
            "CALLBOARD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CALLBOARD_DATABASE_URL": database_url,
            "CALLBOARD_EVENTS_TOPIC": topic,
            "CALLBOARD_AGGREGATOR_METRICS_PORT": "0",
            "CALLBOARD_LOG_LEVEL": "WARNING",
        }
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.topic = topic
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ingest_url = f"http://127.0.0.1:{free_port()}"
        self.api_url = f"http://127.0.0.1:{free_port()}"

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                cwd=REPO,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start_http(self, name: str, url: str, *args: str) -> None:
        self.start(name, name, "--port", url.rsplit(":", 1)[1], *args)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready; see {self.workdir / name}.log")

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def end_offsets(self) -> dict[int, int]:
        consumer = kafka_consumer(bootstrap=self.bootstrap)
        try:
            tps = [
                TopicPartition(self.topic, p)
                for p in consumer.partitions_for_topic(self.topic) or set()
            ]
            return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def applied(self) -> int:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                value = connection.execute(
                    text(
                        "SELECT coalesce(sum(next_offset), 0) FROM consumer_offset WHERE topic = :t"
                    ),
                    {"t": self.topic},
                ).scalar_one()
                return int(value)
        finally:
            engine.dispose()


def _events(count: int, seed: int) -> list[dict[str, Any]]:
    simulator = FloorSimulator(FloorShape(teams=10, agents_per_team=20), seed=seed)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return list(simulator.events(count, start - timedelta(days=1), timedelta(hours=20)))


def _bodies(count: int, batch: int, seed: int) -> list[bytes]:
    events = _events(count, seed)
    return [orjson.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]


@dataclass(frozen=True, slots=True)
class Ceiling:
    """kafka-python's own rates on the broker of this run, in records/s."""

    produce: float
    consume: float


def bench_ceiling(bootstrap: str, events: int, partitions: int) -> Ceiling:
    """Produce the same events as ingest would (one record each, keyed by agent, acks=all,
    idempotent, ingest's linger and batch size) from one producer, then consume them all
    back with one consumer that does nothing with them."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    ensure_topic([bootstrap], topic, partitions)
    records = [
        (str(e.get("agent_id") or e.get("call_id")).encode(), orjson.dumps(e))
        for e in _events(events, seed=2)
    ]
    producer = kafka_producer(
        bootstrap=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=IngestSettings.model_fields["producer_linger_ms"].default,
        batch_size=256 * 1024,
    )
    try:
        producer.partitions_for(topic)  # metadata first: it is not part of the rate
        started = time.perf_counter()
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush()
        for future in futures:
            future.get()
        produce_seconds = time.perf_counter() - started
    finally:
        producer.close()
    produce = len(records) / produce_seconds
    _say(
        f"raw produce (kafka-python, acks=all, idempotent, one producer): {len(records)} "
        f"records in {produce_seconds:.2f} s = {produce:,.0f} records/s"
    )

    # The aggregator's own fetch settings, timed from the first poll: the fetch and the
    # unpacking of the records are the client's work, and the aggregator's rate counts them.
    aggregator = AggregatorSettings()
    consumer = kafka_consumer(
        bootstrap=bootstrap,
        enable_auto_commit=False,
        max_poll_records=aggregator.batch_max_records,
        fetch_max_wait_ms=aggregator.fetch_max_wait_ms,
        max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        received = 0
        deadline = time.monotonic() + 300
        started = time.perf_counter()
        while received < len(records) and time.monotonic() < deadline:
            received += sum(
                len(r)
                for r in consumer.poll(
                    timeout_ms=aggregator.poll_timeout_ms, max_records=aggregator.batch_max_records
                ).values()
            )
        consume_seconds = time.perf_counter() - started
    finally:
        consumer.close()
    if received < len(records):
        raise RuntimeError(f"consumed {received} of {len(records)} records in 5 minutes")
    consume = received / consume_seconds
    _say(
        f"raw consume (kafka-python, one consumer, {partitions} partitions, the aggregator's "
        f"fetch settings): {received} records in {consume_seconds:.2f} s from the first poll "
        f"= {consume:,.0f} records/s"
    )
    return Ceiling(produce, consume)


def _share(rate: float, ceiling: float) -> str:
    return f"{rate:,.0f} events/s = {100 * rate / ceiling:.0f} %"


def bench_ingest(stack: Stack, events: int, batch: int, clients: int, ceiling: Ceiling) -> float:
    bodies = _bodies(events, batch, seed=1)
    total = sum(len(orjson.loads(b)) for b in bodies)

    def post(body: bytes) -> int:
        with httpx.Client(timeout=60) as client:
            response = client.post(
                f"{stack.ingest_url}/v1/events",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        response.raise_for_status()
        return int(response.json()["accepted"])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        accepted = sum(pool.map(post, bodies))
    elapsed = time.perf_counter() - started
    assert accepted == total, (accepted, total)
    rate = total / elapsed
    _say(f"ingest: {_share(rate, ceiling.produce)} of raw produce")
    _say(f"  ({total} events in {elapsed:.2f} s, batches of {batch}, {clients} concurrent clients)")
    return rate


def bench_aggregator(stack: Stack, processes: int, ceiling: Ceiling) -> float:
    """Events/s from the topic into the KPI tables, timed from the moment the first member
    has its partitions (its fetches, unpacking and rebalances count) to the last commit."""
    target = sum(stack.end_offsets().values())
    baseline = stack.applied()
    ports = [free_port() for _ in range(processes)]
    logs = [stack.workdir / f"aggregator-{n}.log" for n in range(processes)]
    sizes = [log.stat().st_size if log.exists() else 0 for log in logs]
    for n, port in enumerate(ports):
        stack.start(
            f"aggregator-{n}",
            "aggregator",
            env={"CALLBOARD_AGGREGATOR_METRICS_PORT": str(port), "CALLBOARD_LOG_LEVEL": "INFO"},
        )
    pids = [stack.processes[f"aggregator-{n}"].pid for n in range(processes)]
    deadline = time.monotonic() + 900
    # Each log from where this run's lines begin, read on from where the last look ended.
    unread = dict(zip(logs, sizes, strict=True))
    while not any(_saw(log, unread, b"partitions assigned") for log in logs):
        if time.monotonic() > deadline:
            raise RuntimeError("no aggregator was assigned partitions in 15 minutes")
        time.sleep(0.01)
    assigned = time.perf_counter()
    cpu_at_start = sum(_cpu_seconds(pid) for pid in pids)
    while stack.applied() < target:
        if time.monotonic() > deadline:
            raise RuntimeError("aggregator did not catch up in 15 minutes")
        time.sleep(0.05)
    elapsed = time.perf_counter() - assigned
    cpu = sum(_cpu_seconds(pid) for pid in pids) - cpu_at_start
    counted = target - baseline
    rate = counted / elapsed
    _say(
        f"aggregator ({processes} process{'es' if processes > 1 else ''}): "
        f"{_share(rate, ceiling.consume)} of raw consume"
    )
    _say(
        f"  ({counted} events in {elapsed:.2f} s from the partitions' assignment; {cpu:.1f} "
        f"aggregator CPU-seconds = {counted / cpu:,.0f} events per aggregator CPU-second)"
    )
    for n, port in enumerate(ports):
        stages = _stage_seconds(port)
        _say(f"  aggregator-{n} seconds by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in stages))
    return rate


def _saw(path: Path, unread: dict[Path, int], line: bytes) -> bool:
    """Whether the lines ``path`` gained since the last look hold ``line``."""
    try:
        with path.open("rb") as file:
            file.seek(unread[path])
            text = file.read()
    except FileNotFoundError:
        return False
    # A line cut where the writer was stays unread for the next look.
    whole = text[: text.rfind(b"\n") + 1]
    unread[path] += len(whole)
    return line in whole


def _stage_seconds(metrics_port: int) -> list[tuple[str, float]]:
    """An aggregator's ``callboard_aggregator_stage_seconds_total``, stage by stage."""
    body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    found = re.findall(
        r'^callboard_aggregator_stage_seconds_total\{stage="(\w+)"\} (\S+)$', body, re.M
    )
    return [(stage, float(value)) for stage, value in found]


def bench_freshness(stack: Stack, rate: int, seconds: int) -> tuple[float, float]:
    """Post ``rate`` events/s; one probe event per batch, timed until the API shows it."""
    simulator = FloorSimulator(FloorShape(teams=5, agents_per_team=10), seed=7)
    batches_per_second = 20
    per_batch = max(rate // batches_per_second, 1)
    pending: dict[str, float] = {}
    seen: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    run = uuid.uuid4().hex[:6]

    def watch() -> None:
        with httpx.Client(base_url=stack.api_url, timeout=10) as client:
            while not done.is_set() or pending:
                with lock:
                    agents = list(pending)
                if not agents:
                    time.sleep(0.01)
                    continue
                response = client.get(
                    "/v1/metrics",
                    params={
                        "metrics": "dials",
                        "group_by": "agent",
                        "period": "last_1h",
                        "agent_id": agents,
                    },
                )
                now = time.perf_counter()
                for row in response.json()["rows"]:
                    if row["dials"] >= 1:
                        with lock:
                            accepted_at = pending.pop(row["agent_id"], None)
                        if accepted_at is not None:
                            seen.append(now - accepted_at)
                time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with httpx.Client(base_url=stack.ingest_url, timeout=30) as client:
        started = time.perf_counter()
        sent = 0
        for n in range(seconds * batches_per_second):
            now_utc = datetime.now(UTC)
            batch: list[dict[str, Any]] = []
            while len(batch) < per_batch - 1:
                batch.extend(simulator.call(now_utc, not_after=now_utc))
            probe = f"probe-{run}-{n}"
            batch.append(
                {
                    "event_id": f"{probe}-e",
                    "type": "call.started",
                    "occurred_at": now_utc.isoformat(),
                    "agent_id": probe,
                    "call_id": f"{probe}-c",
                    "lead_id": f"{probe}-l",
                }
            )
            response = client.post("/v1/events", json=batch)
            response.raise_for_status()
            with lock:
                pending[probe] = time.perf_counter()
            sent += len(batch)
            pause = started + (n + 1) / batches_per_second - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.perf_counter() - started
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    watcher.join(timeout=10)
    if pending:
        raise RuntimeError(f"{len(pending)} probe events never became visible")
    seen.sort()
    p50 = statistics.median(seen)
    p99 = seen[min(len(seen) - 1, int(len(seen) * 0.99))]
    _say(
        f"freshness at {sent / elapsed:,.0f} events/s for {elapsed:.0f} s: "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {seen[-1] * 1000:.0f} ms "
        f"({len(seen)} probes, accepted → visible in /v1/metrics)"
    )
    return p50, p99


def _infrastructure(workdir: Path) -> tuple[str, str, list[Any]]:
    stops: list[Any] = []
    bootstrap = os.environ.get("CALLBOARD_BENCH_KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("CALLBOARD_BENCH_DATABASE_URL")
    if not bootstrap:
        broker = KafkaBroker(workdir / "kafka", port=free_port(), num_partitions=6)
        broker.start(timeout=120)
        stops.append(broker.stop)
        bootstrap = broker.bootstrap_servers
    if not database:
        cluster = PostgresCluster(workdir / "postgres", port=free_port(), durable=True)
        cluster.start()
        stops.append(cluster.stop)
        database = cluster.url
    return bootstrap, database, stops


@contextmanager
def bench_infrastructure(prefix: str) -> Iterator[tuple[Path, str, str]]:
    """A work folder, a broker and a PostgreSQL server (those that CALLBOARD_BENCH_* name,
    where set), all stopped and removed when the benchmark ends."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(workdir, 0o755)
    bootstrap, database, stops = _infrastructure(workdir)
    try:
        yield workdir, bootstrap, database
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per ingest request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    parser.add_argument("--ingest-workers", type=int, default=1, help="ingest processes")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--aggregators", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fresh-rate", type=int, default=1000, help="events/s, freshness run")
    parser.add_argument("--fresh-seconds", type=int, default=20)
    args = parser.parse_args()

    with bench_infrastructure("callboard-bench-") as (workdir, bootstrap, base_url):
        postgres = make_url(base_url).render_as_string()
        _say(f"kafka {bootstrap}; postgres {postgres}; cores {os.cpu_count()}")
        ceiling = bench_ceiling(bootstrap, args.events, args.partitions)
        for processes in args.aggregators:
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            database_url = _fresh_database(base_url)
            ensure_topic([bootstrap], topic, args.partitions)
            stack = Stack(bootstrap, database_url, topic, workdir)
            try:
                stack.start_http("ingest", stack.ingest_url, "--workers", str(args.ingest_workers))
                bench_ingest(stack, args.events, args.batch, args.clients, ceiling)
                bench_aggregator(stack, processes, ceiling)
                if processes == args.aggregators[0]:
                    stack.start_http("api", stack.api_url)
                    bench_freshness(stack, args.fresh_rate, args.fresh_seconds)
            finally:
                stack.stop_all()


def _fresh_database(base_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    return url


if __name__ == "__main__":
    main()
