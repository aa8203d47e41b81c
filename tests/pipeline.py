"""The three services as real processes, for end-to-end tests."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import create_engine, text

from devstack.processes import free_port

REPO = Path(__file__).resolve().parent.parent
TIMEZONE = "Asia/Shanghai"


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so no service outlives it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


class Pipeline:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        database_url: str,
        topic: str,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.database_url = database_url
        self.topic = topic
        self.workdir = workdir
        self.group_id = f"aggregator-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "CALLBOARD_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "CALLBOARD_DATABASE_URL": database_url,
            "CALLBOARD_EVENTS_TOPIC": topic,
            "CALLBOARD_GROUP_ID": self.group_id,
            "CALLBOARD_TIMEZONE": TIMEZONE,
            "CALLBOARD_AGGREGATOR_METRICS_PORT": "0",
            "CALLBOARD_EVENTS_PARTITIONS": "3",
            **(extra_env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ingest_port = free_port()
        self.api_port = free_port()
        self.ingest = httpx.Client(base_url=f"http://127.0.0.1:{self.ingest_port}", timeout=30)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=30)

    def __enter__(self) -> Pipeline:
        self.start("ingest", "ingest", "--port", str(self.ingest_port))
        self.start("api", "api", "--port", str(self.api_port))
        self.start_aggregator()
        self._wait_ready(self.ingest, "ingest")
        self._wait_ready(self.api, "api")
        return self

    def __exit__(self, *exc: object) -> None:
        self.ingest.close()
        self.api.close()
        for name in list(self.processes):
            self.stop(name)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                cwd=REPO,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def start_aggregator(self, name: str = "aggregator", **env: str) -> None:
        self.start(name, "aggregator", env=env)

    def stop(self, name: str, *, kill: bool = False) -> int | None:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.kill() if kill else process.terminate()
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def assignments(self, name: str = "aggregator") -> list[list[int]]:
        """The partitions of each assignment the aggregator ``name`` logged, in order."""
        return [
            sorted(int(p) for p in json.loads(line)["partitions"])
            for line in self.log(name).splitlines()
            if '"partitions assigned"' in line
        ]

    def start_alone(self, service: str) -> httpx.Response:
        """Start ``service`` (ingest or api) by itself: its first answer to ``/healthz``."""
        client = self.ingest if service == "ingest" else self.api
        port = self.ingest_port if service == "ingest" else self.api_port
        self.start(service, service, "--port", str(port))
        deadline = time.monotonic() + 30
        while True:
            try:
                return client.get("/healthz")
            except httpx.TransportError:
                assert time.monotonic() < deadline, self.log(service)
                time.sleep(0.2)

    @contextmanager
    def second_api(self) -> Iterator[httpx.Client]:
        """Another API process on the same database and broker, stopped afterwards."""
        port = free_port()
        self.start("api2", "api", "--port", str(port))
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        try:
            self._wait_ready(client, "api2")
            yield client
        finally:
            client.close()
            self.stop("api2")

    def _wait_ready(self, client: httpx.Client, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready in {timeout} s:\n{self.log(name)[-3000:]}")

    def post(self, events: list[dict[str, Any]], batch: int = 500) -> int:
        """Post events in batches; every batch must be accepted whole."""
        accepted = 0
        for start in range(0, len(events), batch):
            response = self.ingest.post("/v1/events", json=events[start : start + batch])
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["rejected"] == [], body["rejected"][:3]
            accepted += body["accepted"]
        return accepted

    def end_offsets(self) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers)
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in partitions]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def applied_offsets(self) -> dict[int, int]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT partition, next_offset FROM consumer_offset WHERE topic = :t"),
                    {"t": self.topic},
                )
                return {r.partition: r.next_offset for r in rows}
        finally:
            engine.dispose()

    def wait_caught_up(self, timeout: float = 120) -> float:
        """Wait until the database holds every record in the topic; returns seconds waited."""
        started = time.monotonic()
        target = {p: o for p, o in self.end_offsets().items() if o > 0}
        while time.monotonic() - started < timeout:
            applied = self.applied_offsets()
            if all(applied.get(p, 0) >= o for p, o in target.items()):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(
            f"aggregator did not catch up: {self.applied_offsets()} < {target}\n"
            + "\n".join(self.log(n)[-2000:] for n in self.processes if "aggregator" in n)
        )

    def metrics(self, **params: Any) -> dict[str, Any]:
        response = self.api.get("/v1/metrics", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


# What the ``make_pipeline`` fixture gives: start a pipeline with extra settings.
MakePipeline = Callable[..., Pipeline]
# A module's floor: ``start("name", CALLBOARD_X="...")`` is a pipeline of its own.
StartFloor = Callable[..., AbstractContextManager[Pipeline]]


def bearer(key: str) -> dict[str, str]:
    """The header that presents an API key."""
    return {"Authorization": f"Bearer {key}"}


def create_key(pipeline: Pipeline, admin_key: str, **body: Any) -> dict[str, Any]:
    """A key made through ``POST /v1/admin/keys``, as it answers (``key`` is the secret)."""
    response = pipeline.api.post("/v1/admin/keys", json=body, headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@contextmanager
def ingest_without_kafka(
    database_url: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Pipeline]:
    """Ingest alone, its broker a port nobody listens on: alive (``/healthz`` 200) once
    yielded, stopped afterwards."""
    pipeline = Pipeline(
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        database_url=database_url,
        topic="unreachable",
        workdir=workdir,
        extra_env=extra_env,
    )
    try:
        assert pipeline.start_alone("ingest").status_code == 200
        yield pipeline
    finally:
        pipeline.__exit__(None, None, None)
