"""The shipped Prometheus files are valid, their alerts fire as meant, and a real Prometheus
(Debian's package, installed by ``make deps``) scrapes all three services."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import free_port
from tests.pipeline import REPO, Pipeline

OPS = REPO / "ops" / "prometheus"


def tool(name: str) -> str:
    path = shutil.which(name)
    # No skip: `make deps` installs it, and a suite that cannot check this has proved nothing.
    assert path, f"{name} is not installed; run `make deps` (Debian package prometheus)"
    return path


def test_promtool_accepts_the_config_and_the_rules() -> None:
    for args in (
        ("check", "config", str(OPS / "prometheus.yml")),
        ("check", "rules", str(OPS / "alerts.yml")),
        ("test", "rules", str(OPS / "alerts_test.yml")),
    ):
        result = subprocess.run(
            [tool("promtool"), *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def scraped(
    kafka_bootstrap_servers: str,
    database_url: str,
    topic: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Pipeline, int]]:
    aggregator_port = free_port()
    with Pipeline(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=database_url,
        topic=topic,
        workdir=tmp_path_factory.mktemp("prometheus"),
        extra_env={
            "CALLBOARD_AGGREGATOR_METRICS_PORT": str(aggregator_port),
            "CALLBOARD_LAG_SAMPLE_SECONDS": "0.5",
        },
    ) as pipeline:
        yield pipeline, aggregator_port


def prometheus_config(pipeline: Pipeline, aggregator_port: int, rules: Path) -> str:
    jobs = {
        "callboard-ingest": pipeline.ingest_port,
        "callboard-api": pipeline.api_port,
        "callboard-aggregator": aggregator_port,
    }
    scrape = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port in jobs.items()
    )
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}\n"
        f"scrape_configs:\n{scrape}"
    )


def query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = client.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.timeout(180)
def test_a_real_prometheus_scrapes_all_three_services(
    scraped: tuple[Pipeline, int], tmp_path: Path
) -> None:
    pipeline, aggregator_port = scraped
    events = [
        {
            "event_id": f"p-{i}",
            "type": "call.started",
            "occurred_at": "2026-11-02T10:00:00+08:00",
            "agent_id": f"a-{i % 5}",
            "call_id": f"c-{i}",
            "lead_id": f"L-{i}",
        }
        for i in range(50)
    ]
    pipeline.post(events)
    pipeline.ingest.post("/v1/events", json=[{"type": "call.started", "event_id": "bad"}])
    pipeline.wait_caught_up()

    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(pipeline, aggregator_port, OPS / "alerts.yml"))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + 60
        wanted = {
            'callboard_ingest_events_accepted_total{job="callboard-ingest"}': 50,
            'callboard_ingest_events_rejected_total{job="callboard-ingest"}': 1,
            'callboard_aggregator_events_applied_total{job="callboard-aggregator"}': 50,
            'sum(callboard_consumer_committed_offset{job="callboard-api"})': 50,
            'callboard_aggregator_dead_letters_total{job="callboard-aggregator"}': 0,
            'callboard_aggregator_healthy{job="callboard-aggregator"}': 1,
        }
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                response = client.get("/api/v1/targets")
                # Until its storage is open, Prometheus answers 503 in plain text.
                if response.status_code != 200:
                    raise httpx.TransportError(response.text)
                targets = response.json()["data"]["activeTargets"]
            except httpx.TransportError:
                assert server.poll() is None, (tmp_path / "prometheus.log").read_text()
                time.sleep(0.5)
                continue
            up = {t["labels"]["job"]: t["health"] for t in targets}
            seen = {expr: query(client, expr) for expr in wanted}
            values = {
                expr: float(result[0]["value"][1]) if result else None
                for expr, result in seen.items()
            }
            if set(up.values()) == {"up"} and len(up) == 3 and values == wanted:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"Prometheus did not see the services: {up} {seen}")

        # HTTP latency by route, lag per partition, batch sizes, transaction time.
        routes = {
            r["metric"]["route"] for r in query(client, "callboard_http_request_seconds_count")
        }
        assert {"/v1/events"} <= routes
        partitions = query(client, "callboard_consumer_lag_events")
        assert {p["metric"]["partition"] for p in partitions} == {"0", "1", "2"}
        assert query(client, "callboard_aggregator_batch_size_count")
        assert query(client, "callboard_aggregator_transaction_seconds_bucket")
        rules = client.get("/api/v1/rules").json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {
            "CallboardConsumerLagGrowing",
            "CallboardConsumerStalled",
            "CallboardIngestRejecting",
            "CallboardDeadLetterFlood",
            "CallboardAggregatorUnhealthy",
        }
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)
        log.close()
