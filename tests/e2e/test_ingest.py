"""The ingest service's answers, against the real broker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from tests.pipeline import Pipeline, ingest_without_kafka


def _call(event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "call.started",
        "occurred_at": "2026-11-02T10:00:00+08:00",
        "agent_id": "a-1",
        "call_id": f"call-{event_id}",
        "lead_id": "L-1",
        **fields,
    }


def _topic_records(pipeline: Pipeline) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=pipeline.bootstrap_servers, consumer_timeout_ms=3000)
    tps = [TopicPartition(pipeline.topic, p) for p in range(3)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    records = [json.loads(r.value) for r in consumer]
    consumer.close()
    return records


@pytest.fixture
def ingest_only(pipeline: Pipeline) -> Pipeline:
    pipeline.stop("aggregator")
    return pipeline


def test_single_array_and_ndjson_bodies_are_stored(ingest_only: Pipeline) -> None:
    client = ingest_only.ingest
    assert client.post("/v1/events", json=_call("one")).json() == {"accepted": 1, "rejected": []}
    assert client.post("/v1/events", json=[_call("a"), _call("b")]).json()["accepted"] == 2
    ndjson = "\n".join(json.dumps(_call(f"n{i}")) for i in range(3)) + "\n"
    response = client.post(
        "/v1/events", content=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 3
    stored = {r["event_id"]: r for r in _topic_records(ingest_only)}
    assert set(stored) == {"one", "a", "b", "n0", "n1", "n2"}
    assert stored["one"]["direction"] == "outbound"


def test_a_batch_is_accepted_in_part_and_says_which_were_rejected(ingest_only: Pipeline) -> None:
    response = ingest_only.ingest.post(
        "/v1/events",
        json=[_call("good"), _call("bad", direction="sideways"), {"type": "call.started"}],
    )
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["event_id"]) for r in body["rejected"]] == [(1, "bad"), (2, None)]
    assert body["rejected"][0]["errors"][0]["field"] == "direction"
    assert {e["field"] for e in body["rejected"][1]["errors"]} >= {"event_id", "occurred_at"}
    assert [r["event_id"] for r in _topic_records(ingest_only)] == ["good"]


def test_all_rejected_answers_422_with_the_error_body(ingest_only: Pipeline) -> None:
    response = ingest_only.ingest.post(
        "/v1/events", json=[_call("x", occurred_at="2026-11-02T10:00:00")]
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["code"] == "invalid_input"
    assert body["rejected"][0]["errors"][0]["field"] == "occurred_at"
    assert body["accepted"] == 0


def test_malformed_json_is_422_not_500(ingest_only: Pipeline) -> None:
    response = ingest_only.ingest.post(
        "/v1/events", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]["message"]


def test_a_bad_ndjson_line_is_rejected_alone(ingest_only: Pipeline) -> None:
    lines = [json.dumps(_call("line-0")), "{not json", json.dumps(_call("line-2"))]
    response = ingest_only.ingest.post(
        "/v1/events",
        content="\n".join(lines) + "\n",
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["event_id"]) for r in body["rejected"]] == [(1, None)]
    assert "not valid JSON" in body["rejected"][0]["errors"][0]["message"]
    assert sorted(r["event_id"] for r in _topic_records(ingest_only)) == ["line-0", "line-2"]


def test_money_sent_as_a_json_number_stays_exact(ingest_only: Pipeline) -> None:
    sale = (
        '{"event_id": "big-sale", "type": "sale.closed", "occurred_at": '
        '"2026-11-02T10:00:00+08:00", "agent_id": "a-1", "lead_id": "L-1", '
        '"order_id": "o-big", "amount": 1234567890123.4567, "margin": 0.1}'
    )
    response = ingest_only.ingest.post(
        "/v1/events", content=sale, headers={"Content-Type": "application/json"}
    )
    assert response.json() == {"accepted": 1, "rejected": []}
    (stored,) = _topic_records(ingest_only)
    assert (stored["amount"], stored["margin"]) == ("1234567890123.4567", "0.1")


def test_a_number_beyond_a_float_refuses_its_event_alone(ingest_only: Pipeline) -> None:
    sale = (
        '{"event_id": "huge-sale", "type": "sale.closed", "occurred_at": '
        '"2026-11-02T10:00:00+08:00", "agent_id": "a-1", "lead_id": "L-1", '
        '"order_id": "o-huge", "amount": 1e400}'
    )
    body = f"[{json.dumps(_call('beside-it'))}, {sale}]"
    response = ingest_only.ingest.post(
        "/v1/events", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 1
    ((index, event_id, fields),) = [
        (r["index"], r["event_id"], [e["field"] for e in r["errors"]]) for r in answer["rejected"]
    ]
    assert (index, event_id, fields) == (1, "huge-sale", ["amount"])
    assert [r["event_id"] for r in _topic_records(ingest_only)] == ["beside-it"]


def test_a_body_over_the_limit_is_413(ingest_only: Pipeline) -> None:
    events = [_call(f"big-{i}", source="s" * 60) for i in range(40_000)]
    response = ingest_only.ingest.post("/v1/events", json=events)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_without_kafka_ingest_answers_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> None:
    with ingest_without_kafka(database_url, tmp_path_factory.mktemp("no-kafka")) as pipeline:
        assert pipeline.ingest.get("/readyz").status_code == 503
        response = pipeline.ingest.post("/v1/events", json=_call("not-stored"))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        error = response.json()["error"]
        assert error["code"] == "unavailable"
        # What the Kafka client said is logged, not answered.
        assert set(error) == {"code", "message"}, error
        assert "produce failed" in pipeline.log("ingest")
