"""Operations: request ids from ingest to the aggregator's logs, readiness that means
something, the metrics each service exposes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devstack.processes import free_port
from tests.pipeline import Pipeline

pytestmark = pytest.mark.timeout(180)


def _call(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "call.started",
        "occurred_at": "2026-11-02T10:00:00+08:00",
        "agent_id": "a-1",
        "call_id": f"c-{event_id}",
        "lead_id": "L-1",
    }


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_request_id_travels_from_ingest_through_kafka_to_the_aggregator(
    pipeline: Pipeline,
) -> None:
    response = pipeline.ingest.post(
        "/v1/events", json=[_call("r-1"), _call("r-2")], headers={"X-Request-ID": "dialer-7:42"}
    )
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "dialer-7:42"
    generated = pipeline.ingest.post("/v1/events", json=_call("r-3"))
    generated_id = generated.headers["X-Request-ID"]
    assert len(generated_id) == 32
    # A request id that would forge log lines or flood them is replaced by a generated one.
    forged = pipeline.ingest.post(
        "/v1/events", json=_call("r-4"), headers={"X-Request-ID": "x" * 129}
    )
    assert forged.status_code == 202 and forged.headers["X-Request-ID"] != "x" * 129
    pipeline.wait_caught_up()

    stored = [
        line for line in json_lines(pipeline.log("ingest")) if line["message"] == "events stored"
    ]
    assert {"request_id": "dialer-7:42", "accepted": 2}.items() <= stored[0].items()
    assert stored[0]["service"] == "ingest" and stored[0]["level"] == "info"

    deadline = time.monotonic() + 10
    while True:
        batches = [
            line
            for line in json_lines(pipeline.log("aggregator"))
            if line["message"] == "batch applied"
        ]
        carried = {rid for line in batches for rid in line["request_ids"]}
        if {"dialer-7:42", generated_id} <= carried or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"dialer-7:42", generated_id} <= carried, batches
    assert sum(line["applied"] for line in batches) == 4
    assert all(line["service"] == "aggregator" for line in batches)


def test_api_is_alive_but_not_ready_without_its_database(
    kafka_bootstrap_servers: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    closed = f"postgresql+psycopg://callboard:callboard@127.0.0.1:{free_port()}/callboard"
    pipeline = Pipeline(
        bootstrap_servers=kafka_bootstrap_servers,
        database_url=closed,
        topic="no-database",
        workdir=tmp_path_factory.mktemp("no-db"),
        extra_env={"CALLBOARD_LAG_SAMPLE_SECONDS": "0"},
    )
    try:
        health = pipeline.start_alone("api")
        assert health.status_code == 200
        for path in ("/readyz", "/v1/metrics", "/v1/ops/lag"):
            response = pipeline.api.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["Retry-After"] == "5"
            assert response.json()["error"]["code"] == "unavailable"
    finally:
        pipeline.__exit__(None, None, None)


def test_each_service_exposes_its_metrics(pipeline: Pipeline) -> None:
    pipeline.post([_call("m-1")])
    pipeline.ingest.post("/v1/events", json=[{"type": "call.started"}])
    pipeline.wait_caught_up()
    pipeline.api.get("/v1/ops/lag")
    ingest = pipeline.ingest.get("/metrics").text
    for name in (
        "callboard_ingest_events_received_total 2.0",
        "callboard_ingest_events_accepted_total 1.0",
        'callboard_ingest_events_rejected_total{field="event_id"} 1.0',
        "callboard_ingest_produce_seconds_bucket",
        'callboard_http_errors_total{code="invalid_input",service="ingest"} 1.0',
        'route="/v1/events",service="ingest",status="202"',
    ):
        assert name in ingest, name
    api = pipeline.api.get("/metrics").text
    for name in (
        "callboard_consumer_lag_events{",
        "callboard_consumer_lag_seconds{",
        'route="/v1/ops/lag",service="api",status="200"',
    ):
        assert name in api, name


def test_log_lines_are_json_whatever_the_extra_fields_hold() -> None:
    import logging

    from shared.logs import JsonFormatter, request_id_var

    record = logging.makeLogRecord(
        {"msg": "partitions assigned", "levelname": "INFO", "partitions": {0: 12, 1: 7}}
    )
    token = request_id_var.set("req-1")
    try:
        line = json.loads(JsonFormatter("aggregator").format(record))
    finally:
        request_id_var.reset(token)
    assert line["partitions"] == {"0": 12, "1": 7}
    assert line["request_id"] == "req-1"
