"""The adapters end to end: native records over HTTP (or a Master.csv through the importer),
through Kafka and the aggregator, out of the read API, equal to the generator's truth.

Each system's records are shuffled and a third of them sent twice, as dialers retry and
Firehose re-delivers. The bad inputs of each system get their documented answers, and
after the vendors' samples are replayed neither Kafka, the database nor a log line holds
one of their phone numbers, SIP URIs or caller names.

Over 500 lines as one module: the five systems' tests share one pipeline and one
generated truth, and each system's bad inputs sit beside its good ones.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from kafka import KafkaConsumer
from sqlalchemy import create_engine, inspect, text

from tests import adapter_floor as floor
from tests.pipeline import REPO, TIMEZONE, MakePipeline, Pipeline, ingest_without_kafka

if TYPE_CHECKING:
    from shared.auth import NewKey

ZONE = ZoneInfo(TIMEZONE)
DAY_START = datetime(2026, 11, 2, 9, 0, tzinfo=ZONE)
SECRET = "adapter-tests-lead-id-secret-0123456789"
TOKEN = "twilio-auth-token-for-the-tests"
ENV = {
    "CALLBOARD_LEAD_ID_SECRET": SECRET,
    "CALLBOARD_TWILIO_AUTH_TOKEN": TOKEN,
    # The floors are posted as fast as one client can: faster than a dialer per address.
    "CALLBOARD_RATE_LIMIT_PER_SECOND": "0",
}
KEYS = (
    "dials",
    "inbound_calls",
    "connects",
    "inbound_connects",
    "contacts",
    "drops",
    "abandoned",
    "machine_answers",
    "talk_seconds",
    "sales",
    "revenue",
)
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def day_totals(pipeline: Pipeline) -> dict[str, Any]:
    day = DAY_START.replace(hour=0)
    body = pipeline.metrics(
        **{
            "from": day.isoformat(),
            "to": (day + timedelta(days=1)).isoformat(),
            "metrics": ",".join(KEYS),
        }
    )
    rows: list[dict[str, Any]] = body["rows"]
    return rows[0] if rows else {}


def assert_truth(pipeline: Pipeline, expected: dict[str, Any]) -> dict[str, Any]:
    got = day_totals(pipeline)
    comparable = {
        k: (Decimal(str(got.get(k) or 0)) if k in ("revenue", "talk_seconds") else got.get(k) or 0)
        for k in KEYS
    }
    wanted = {
        k: (Decimal(expected.get(k, 0)) if k in ("revenue", "talk_seconds") else expected.get(k, 0))
        for k in KEYS
    }
    assert comparable == wanted
    return comparable


def shuffled_with_repeats(items: list[Any], seed: int) -> list[Any]:
    rng = random.Random(seed)
    out = items + rng.sample(items, len(items) // 3)
    rng.shuffle(out)
    return out


def signed_post(
    pipeline: Pipeline,
    query: dict[str, str],
    form: dict[str, str],
    *,
    as_get: bool = False,
    token: str = TOKEN,
) -> Any:
    base = f"http://127.0.0.1:{pipeline.ingest_port}/v1/adapters/twilio/status"
    if as_get:
        url = f"{base}?{urlencode({**query, **form})}"
        signature = floor.twilio_signature(token, url, {})
        return pipeline.ingest.get(url, headers={"X-Twilio-Signature": signature})
    url = f"{base}?{urlencode(query)}"
    signature = floor.twilio_signature(token, url, form)
    return pipeline.ingest.post(url, data=form, headers={"X-Twilio-Signature": signature})


# Floors ------------------------------------------------------------------------------------


def test_twilio_floor(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(**ENV)
    calls = floor.generate(1, DAY_START, 150)
    rng = random.Random(1)
    callbacks = [cb for call in calls for cb in floor.twilio_callbacks(call, rng)]
    for query, form in shuffled_with_repeats(callbacks, 2):
        response = signed_post(pipeline, query, form, as_get=rng.random() < 0.25)
        assert response.status_code == 200, response.text
    pipeline.wait_caught_up()
    expected = floor.truth(
        calls, sales=False, contact_from_code=False, machine_talk=True, drop_talk=1
    )
    print("twilio", assert_truth(pipeline, expected))


def test_vicidial_floor(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(**ENV)
    calls = floor.generate(2, DAY_START, 150)
    urls = [url for call in calls for url in floor.vicidial_urls(call)]
    for route, query in shuffled_with_repeats(urls, 3):
        response = pipeline.ingest.get(f"/v1/adapters/vicidial/{route}", params=query)
        assert response.status_code == 200, response.text
    pipeline.wait_caught_up()
    expected = floor.truth(calls, abandoned_is_drop=True)
    print("vicidial", assert_truth(pipeline, expected))


def test_connect_floor_through_firehose(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(**ENV)
    calls = floor.generate(3, DAY_START, 150)
    records = shuffled_with_repeats([r for c in calls for r in floor.connect_records(c)], 4)
    for number, start in enumerate(range(0, len(records), 40)):
        request = floor.firehose_request(records[start : start + 40], f"req-{number}")
        # A record that is not base64 and one that is not JSON, among good ones.
        request["records"].insert(3, {"data": "not base64 at all!"})
        request["records"].append({"data": base64.b64encode(b"{not json").decode()})
        response = pipeline.ingest.post(
            "/v1/adapters/connect/firehose",
            json=request,
            headers={"X-Amz-Firehose-Request-Id": f"req-{number}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["requestId"] == f"req-{number}"
        assert isinstance(body["timestamp"], int) and "errorMessage" not in body
    pipeline.wait_caught_up()
    print("connect", assert_truth(pipeline, floor.truth(calls)))
    log = pipeline.log("ingest")
    assert log.count('"reason": "data is not base64"') == log.count('"reason": "data is not JSON"')
    assert '"native record set aside"' in log


FREESWITCH_OUTCOMES = ("human", "busy", "no_answer", "failed", "inbound_human", "inbound_abandoned")


def test_freeswitch_floor(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(**ENV)
    calls = [c for c in floor.generate(4, DAY_START, 200) if c.outcome in FREESWITCH_OUTCOMES]
    legs = [leg for call in calls for leg in floor.freeswitch_legs(call)]
    for index, leg in enumerate(shuffled_with_repeats(legs, 5)):
        uuid = leg["variables"]["uuid"]
        if index % 2:
            # encode=true: the form field cdr, each value URL-encoded (encode-values).
            encoded = {"variables": {k: quote(v, safe="") for k, v in leg["variables"].items()}}
            response = pipeline.ingest.post(
                "/v1/adapters/freeswitch/cdr",
                params={"uuid": uuid},
                data={"cdr": json.dumps(encoded)},
            )
        else:
            response = pipeline.ingest.post(
                "/v1/adapters/freeswitch/cdr", params={"uuid": uuid}, json=leg
            )
        assert response.status_code == 200, response.text
    pipeline.wait_caught_up()
    expected = floor.truth(calls, sales=False, contact_from_code=False)
    print("freeswitch", assert_truth(pipeline, expected))


def asterisk_import(pipeline: Pipeline, path: Path, *args: str) -> list[str]:
    """The command line that imports an Asterisk ``Master.csv`` into ``pipeline``'s ingest."""
    return [
        *(sys.executable, "-m", "services.cli", "import", "--format", "asterisk-cdr", str(path)),
        *("--ingest-url", f"http://127.0.0.1:{pipeline.ingest_port}", *args),
    ]


def run_import(
    pipeline: Pipeline,
    path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asterisk_import(pipeline, path, *args),
        cwd=REPO,
        env={**pipeline.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_roster(path: Path, agents: int = 4) -> Path:
    lines = ["usegmtime = false", "[extensions]"]
    lines += [
        f'"10{n:02d}" = {{ agent_id = "agent-{n}", team_id = "team-{n % 2}" }}'
        for n in range(agents)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_asterisk_floor_and_a_short_line(make_pipeline: MakePipeline, tmp_path: Path) -> None:
    pipeline = make_pipeline(**ENV)
    calls = [c for c in floor.generate(5, DAY_START, 200) if c.outcome in FREESWITCH_OUTCOMES]
    lines = [line for c in calls for line in floor.asterisk_lines(c, ZONE, 4)]
    shuffled = shuffled_with_repeats(lines, 6)
    shuffled.insert(7, '"","1001","2002","from-internal"')
    master = tmp_path / "Master.csv"
    master.write_text("\n".join(shuffled) + "\n")
    roster = write_roster(tmp_path / "roster.toml")
    result = run_import(pipeline, master, "--roster", str(roster))
    # The short line is rejected with its line number; every other line is imported.
    assert result.returncode == 1, result.stdout + result.stderr
    assert "4 columns" in result.stderr
    assert "│ 8" in result.stderr or " 8 " in result.stderr
    pipeline.wait_caught_up()
    expected = floor.truth(calls, sales=False, contact_from_code=False)
    print("asterisk", assert_truth(pipeline, expected))


def test_asterisk_follow_counts_new_lines_and_resumes(
    make_pipeline: MakePipeline, tmp_path: Path
) -> None:
    pipeline = make_pipeline(**ENV)
    calls = [c for c in floor.generate(6, DAY_START, 60) if c.outcome == "human"]
    first, second = calls[: len(calls) // 2], calls[len(calls) // 2 :]
    master = tmp_path / "Master.csv"
    master.write_text("")
    roster = write_roster(tmp_path / "roster.toml")
    state = tmp_path / "Master.csv.position"
    command = asterisk_import(
        pipeline, master, "--roster", str(roster), "--follow", "--state", str(state)
    )

    output = tmp_path / "follow.log"

    def follower() -> subprocess.Popen[bytes]:
        with output.open("ab") as log:
            return subprocess.Popen(
                command, cwd=REPO, env=pipeline.env, stdout=log, stderr=subprocess.STDOUT
            )

    process = follower()
    try:
        # Timed from the moment it follows the file, however long the interpreter took
        # to start on a busy machine.
        started = time.monotonic() + 60
        while "following" not in output.read_text() and time.monotonic() < started:
            assert process.poll() is None, output.read_text()
            time.sleep(0.05)
        assert "following" in output.read_text(), output.read_text()
        with master.open("a") as handle:
            for call in first:
                handle.write(floor.asterisk_lines(call, ZONE, 4)[0] + "\n")
        appended = time.monotonic()
        deadline = appended + 10
        while time.monotonic() < deadline:
            if sum(pipeline.end_offsets().values()) >= 2 * len(first):
                break
            time.sleep(0.05)
        within = time.monotonic() - appended
        assert sum(pipeline.end_offsets().values()) == 2 * len(first)
        assert within < 1.0, within
    finally:
        process.terminate()
        process.wait(timeout=20)
    # Restart: the lines already imported are not sent again.
    with master.open("a") as handle:
        for call in second:
            handle.write(floor.asterisk_lines(call, ZONE, 4)[0] + "\n")
    process = follower()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if sum(pipeline.end_offsets().values()) >= 2 * len(calls):
                break
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert sum(pipeline.end_offsets().values()) == 2 * len(calls)
    pipeline.wait_caught_up()
    assert_truth(pipeline, floor.truth(calls, sales=False, contact_from_code=False))


# Bad input ---------------------------------------------------------------------------------


def test_bad_inputs_get_their_answers(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(**ENV)
    sample = dict(parse_qsl((SAMPLES / "twilio_t1.txt").read_text().strip()))
    good = signed_post(pipeline, {"agent_id": "a-1"}, sample)
    assert good.status_code == 200, good.text
    wrong = signed_post(pipeline, {"agent_id": "a-1"}, sample, token="not-the-token")
    assert wrong.status_code == 403
    assert "X-Twilio-Signature" in wrong.json()["error"]["message"]
    unsigned = pipeline.ingest.post("/v1/adapters/twilio/status", data=sample)
    assert unsigned.status_code == 403
    without_sid = {k: v for k, v in sample.items() if k != "CallSid"}
    missing = signed_post(pipeline, {"agent_id": "a-1"}, without_sid)
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["field"] == "CallSid"
    # Behind a TLS proxy: Twilio signed the https URL; the proxy says so.
    base = f"http://127.0.0.1:{pipeline.ingest_port}/v1/adapters/twilio/status?agent_id=a-1"
    proxied = base.replace("http://127.0.0.1", "https://callboard.example.com").replace(
        f":{pipeline.ingest_port}", ""
    )
    response = pipeline.ingest.post(
        base,
        data=sample,
        headers={
            "X-Twilio-Signature": floor.twilio_signature(TOKEN, proxied, sample),
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "callboard.example.com",
        },
    )
    assert response.status_code == 200, response.text

    # A VICIdial code nobody knows: counted, with no flags.
    unknown = pipeline.ingest.get(
        "/v1/adapters/vicidial/dispo",
        params={
            "uniqueid": "1762.9",
            "epoch": str(int(DAY_START.timestamp())),
            "lead_id": "77",
            "user": "a-2",
            "campaign": "c",
            "dispo": "ZZTOP",
            "talk_time": "42",
        },
    )
    assert unknown.status_code == 200, unknown.text
    no_uniqueid = pipeline.ingest.get("/v1/adapters/vicidial/dispo", params={"dispo": "NI"})
    assert no_uniqueid.status_code == 422
    assert no_uniqueid.json()["error"]["details"][0]["field"] == "uniqueid"

    # Firehose: a body that is not Firehose's gets Firehose's error shape.
    broken = pipeline.ingest.post(
        "/v1/adapters/connect/firehose",
        content=b"nope",
        headers={"X-Amz-Firehose-Request-Id": "r-1"},
    )
    assert broken.status_code == 400
    assert broken.json()["requestId"] == "r-1" and "errorMessage" in broken.json()
    only_bad = pipeline.ingest.post(
        "/v1/adapters/connect/firehose",
        json={"requestId": "r-2", "timestamp": 1, "records": [{"data": "%%%"}]},
    )
    assert only_bad.status_code == 200 and only_bad.json()["requestId"] == "r-2"

    # A record whose events ingest refuses (a lead id shaped like a phone number) is set
    # aside alone; the records around it are stored.
    def contact(number: int, lead: str) -> dict[str, Any]:
        return {
            "ContactId": f"fh-{number}",
            "Channel": "VOICE",
            "InitiationMethod": "OUTBOUND",
            "InitiationTimestamp": DAY_START.isoformat(),
            "LastUpdateTimestamp": DAY_START.isoformat(),
            "Agent": {"Username": "fh-agent", "AgentInteractionDuration": 30},
            "ConnectedToSystemTimestamp": DAY_START.isoformat(),
            "Attributes": {"lead_id": lead},
        }

    mixed = floor.firehose_request(
        [contact(1, "L-1"), contact(2, "+8613812345678"), contact(3, "L-3")], "r-3"
    )
    response = pipeline.ingest.post("/v1/adapters/connect/firehose", json=mixed)
    assert response.status_code == 200, response.text

    pipeline.wait_caught_up()
    set_aside = [
        entry
        for entry in (
            json.loads(line) for line in pipeline.log("ingest").splitlines() if line[:1] == "{"
        )
        if entry.get("message") == "native record set aside" and entry.get("record_index") == 1
    ]
    assert any(e["reason"].startswith("lead_id: looks like a phone number") for e in set_aside)
    day = DAY_START.replace(hour=0)
    fh = pipeline.metrics(
        **{
            "from": day.isoformat(),
            "to": (day + timedelta(days=1)).isoformat(),
            "agent_id": "fh-agent",
            "metrics": "dials,connects",
        }
    )
    assert fh["rows"][0]["dials"] == 2 and fh["rows"][0]["connects"] == 2
    dispositions = pipeline.api.get(
        "/v1/dispositions",
        params={"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
    )
    assert dispositions.status_code == 200, dispositions.text
    (zztop,) = [
        code
        for row in dispositions.json()["rows"]
        for code in row["codes"]
        if code["code"] == "ZZTOP"
    ]
    assert zztop["calls"] == 1 and zztop["known"] is False
    assert not any(zztop["flags"].values())
    totals = pipeline.metrics(
        **{
            "from": day.isoformat(),
            "to": (day + timedelta(days=1)).isoformat(),
            "agent_id": "a-2",
            "metrics": "dials,connects,contacts",
        }
    )
    assert totals["rows"][0] == {**totals["rows"][0], "dials": 1, "connects": 1, "contacts": 0}


def test_unset_token_and_secret_are_refused_with_what_to_configure(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline()
    sample = dict(parse_qsl((SAMPLES / "twilio_t1.txt").read_text().strip()))
    refused = signed_post(pipeline, {}, sample)
    assert refused.status_code == 403
    assert "CALLBOARD_TWILIO_AUTH_TOKEN" in refused.json()["error"]["message"]
    no_secret = pipeline.ingest.get(
        "/v1/adapters/vicidial/no-agent",
        params={
            "uniqueid": "1.1",
            "epoch": "1762045200",
            "status": "NA",
            "phone_number": "7275551212",
        },
    )
    assert no_secret.status_code == 422
    assert "CALLBOARD_LEAD_ID_SECRET" in no_secret.json()["error"]["message"]
    assert "7275551212" not in no_secret.text


# Privacy -----------------------------------------------------------------------------------

PERSONAL = (
    "551135892112",
    "16466063895",
    "260967301606",
    "447412301423",
    "190011112222",
    "18003335555",
    "18002430000",
    "89245555937",
    "214943",
    "7275551212",
    "alice@example.com",
    "sip:alice",
    "ZHANG SAN",
    "Zhang San",
)


def test_no_personal_data_in_kafka_database_or_logs(
    make_pipeline: MakePipeline, tmp_path: Path
) -> None:
    pipeline = make_pipeline(**ENV)
    t1 = dict(parse_qsl((SAMPLES / "twilio_t1.txt").read_text().strip()))
    t2 = dict(parse_qsl((SAMPLES / "twilio_t2.txt").read_text().strip()))
    for form in (t1, t2):
        assert signed_post(pipeline, {"agent_id": "a-1"}, form).status_code == 200
    sip = {
        **t1,
        "CallSid": "CAsip",
        "Direction": "inbound",
        "From": "sip:alice@example.com",
        "CallerName": "ZHANG SAN",
    }
    assert signed_post(pipeline, {"agent_id": "a-1"}, sip, as_get=True).status_code == 200
    c1 = (SAMPLES / "connect_c1.json").read_bytes()
    firehose = {
        "requestId": "r",
        "timestamp": 1,
        "records": [{"data": base64.b64encode(c1).decode()}],
    }
    assert pipeline.ingest.post("/v1/adapters/connect/firehose", json=firehose).status_code == 200
    f1 = json.loads((SAMPLES / "freeswitch_f1.json").read_text())
    f1["variables"].update(
        {
            "caller_id_name": "Zhang San",
            "caller_id_number": "16466063895",
            "destination_number": "551135892112",
        }
    )
    assert pipeline.ingest.post("/v1/adapters/freeswitch/cdr", json=f1).status_code == 200
    vici = {
        "uniqueid": "1706412022.63",
        "epoch": "1762045200",
        "dispo": "NI",
        "talk_time": "214",
        "user": "6666",
        "phone_number": "7275551212",
    }
    assert pipeline.ingest.get("/v1/adapters/vicidial/dispo", params=vici).status_code == 200
    bad = pipeline.ingest.get("/v1/adapters/vicidial/dispo", params={**vici, "epoch": "x"})
    assert bad.status_code == 422 and "7275551212" not in bad.text
    result = run_import(pipeline, SAMPLES / "asterisk_a1.csv")
    assert result.returncode == 0, result.stderr
    pipeline.wait_caught_up()

    consumer = KafkaConsumer(
        pipeline.topic,
        bootstrap_servers=pipeline.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    kafka_text = "\n".join(m.value.decode() for m in consumer)
    consumer.close()
    assert kafka_text.count('"type"') >= 10
    engine = create_engine(pipeline.database_url)
    dump: list[str] = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            rows = connection.execute(text(f'SELECT * FROM "{table}"'))
            dump.extend(repr(tuple(row)) for row in rows)
    engine.dispose()
    database_text = "\n".join(dump)
    assert "1706412022.63" in database_text  # the samples are there, by their ids
    logs = "\n".join(pipeline.log(name) for name in ("ingest", "aggregator", "api"))
    logs += result.stdout + result.stderr
    for value in PERSONAL:
        assert value not in kafka_text, value
        assert value not in database_text, value
        assert value not in logs, value


# One VICIdial disposition, for the tests of who may post it.
DISPO_L5 = {
    "uniqueid": "5.5",
    "epoch": "1762045200",
    "dispo": "NI",
    "talk_time": "60",
    "user": "a-1",
    "lead_id": "L5",
}


def _keys_required(make_pipeline: MakePipeline, *keys: NewKey) -> tuple[Pipeline, list[str]]:
    """A pipeline that requires a key (and caches none), and these keys made in its database."""
    from shared.auth import create_key

    pipeline = make_pipeline(
        **ENV, CALLBOARD_AUTH_MODE="required", CALLBOARD_AUTH_CACHE_SECONDS="0"
    )
    engine = create_engine(pipeline.database_url)
    with engine.begin() as connection:
        made = [create_key(connection, new).key for new in keys]
    engine.dispose()
    return pipeline, made


def test_ingest_key_as_query_parameter_basic_password_or_firehose_header(
    make_pipeline: MakePipeline,
) -> None:
    from shared.auth import NewKey, Scope

    pipeline, (key, read_key) = _keys_required(
        make_pipeline,
        NewKey(name="dialer", scopes=[Scope.ingest]),
        NewKey(name="board", scopes=[Scope.read]),
    )
    dispo = DISPO_L5
    route = "/v1/adapters/vicidial/dispo"
    assert pipeline.ingest.get(route, params=dispo).status_code == 401
    assert pipeline.ingest.get(route, params={**dispo, "key": key}).status_code == 200
    assert pipeline.ingest.get(route, params={**dispo, "key": read_key}).status_code == 403
    assert pipeline.ingest.get(route, params=dispo, auth=("vicidial", key)).status_code == 200
    assert pipeline.ingest.get(route, params=dispo, auth=("vicidial", "wrong")).status_code == 401
    assert pipeline.ingest.get(route, params=dispo, headers={"X-API-Key": key}).status_code == 200
    # The query parameter is for adapter routes only.
    event = {
        "event_id": "e-1",
        "type": "call.started",
        "occurred_at": "2026-11-02T09:00:00+08:00",
        "agent_id": "a-1",
        "call_id": "c-1",
    }
    assert pipeline.ingest.post("/v1/events", params={"key": key}, json=event).status_code == 401
    c1 = (SAMPLES / "connect_c1.json").read_bytes()
    request = {
        "requestId": "r-9",
        "timestamp": 1,
        "records": [{"data": base64.b64encode(c1).decode()}],
    }
    refused = pipeline.ingest.post(
        "/v1/adapters/connect/firehose", json=request, headers={"X-Amz-Firehose-Request-Id": "r-9"}
    )
    assert refused.status_code == 401
    assert refused.json()["requestId"] == "r-9" and refused.json()["errorMessage"]
    taken = pipeline.ingest.post(
        "/v1/adapters/connect/firehose", json=request, headers={"X-Amz-Firehose-Access-Key": key}
    )
    assert taken.status_code == 200, taken.text


def test_without_kafka_adapters_answer_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> None:
    with ingest_without_kafka(database_url, tmp_path_factory.mktemp("no-kafka"), ENV) as pipeline:
        dispo = DISPO_L5
        refused = pipeline.ingest.get("/v1/adapters/vicidial/dispo", params=dispo)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"
        sample = dict(parse_qsl((SAMPLES / "twilio_t1.txt").read_text().strip()))
        twilio_refused = signed_post(pipeline, {"agent_id": "a-1"}, sample)
        assert twilio_refused.status_code == 503
        c1 = (SAMPLES / "connect_c1.json").read_bytes()
        firehose = pipeline.ingest.post(
            "/v1/adapters/connect/firehose",
            json={
                "requestId": "r-5",
                "timestamp": 1,
                "records": [{"data": base64.b64encode(c1).decode()}],
            },
        )
        # Firehose's error shape, so that Firehose retries the batch later.
        assert firehose.status_code == 503
        assert firehose.headers["Retry-After"] == "5"
        assert firehose.json()["requestId"] == "r-5" and firehose.json()["errorMessage"]


def test_an_ingest_key_limited_to_teams_is_held_to_them_on_adapter_routes(
    make_pipeline: MakePipeline,
) -> None:
    from shared.auth import NewKey, Scope

    pipeline, (key,) = _keys_required(
        make_pipeline, NewKey(name="t-1 dialer", scopes=[Scope.ingest], team_ids=["t-1"])
    )
    dispo = {
        "uniqueid": "7.7",
        "epoch": "1762045200",
        "dispo": "NI",
        "talk_time": "60",
        "user": "a-7",
        "lead_id": "L7",
        "key": key,
    }
    route = "/v1/adapters/vicidial/dispo"
    outside = pipeline.ingest.get(route, params={**dispo, "user_group": "t-2"})
    assert outside.status_code == 403, outside.text
    assert "t-2" not in outside.json()["error"]["message"]
    unnamed = pipeline.ingest.get(route, params=dispo)  # no team: the roster would decide
    assert unnamed.status_code == 403, unnamed.text
    inside = pipeline.ingest.get(route, params={**dispo, "user_group": "t-1"})
    assert inside.status_code == 200, inside.text
    pipeline.wait_caught_up()
    engine = create_engine(pipeline.database_url)
    with engine.connect() as connection:
        counted = connection.execute(
            text("SELECT team_id, sum(dials) FROM kpi_day WHERE agent_id = 'a-7' GROUP BY team_id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in counted] == [("t-1", 1)]


# Documented body styles and signature schemes -----------------------------------------------


def test_freeswitch_every_encode_setting_and_firehose_gzip(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(**ENV)
    calls = [c for c in floor.generate(6, DAY_START, 80) if c.outcome in FREESWITCH_OUTCOMES]
    legs = [leg for call in calls for leg in floor.freeswitch_legs(call)]
    for index, leg in enumerate(shuffled_with_repeats(legs, 7)):
        # encode-values (the default): every value URL-encoded inside the JSON.
        encoded = json.dumps(
            {"variables": {k: quote(v, safe="") for k, v in leg["variables"].items()}}
        )
        style = index % 4
        if style == 0:  # encode=false: the JSON as the body
            content, media = json.dumps(leg).encode(), "application/json"
        elif style == 1:  # encode=true: cdr=<URL-encoded JSON>
            content, media = (
                f"cdr={quote(encoded, safe='')}".encode(),
                ("application/x-www-form-urlencoded"),
            )
        elif style == 2:  # encode=base64: cdr=<base64 JSON>
            content = b"cdr=" + base64.b64encode(encoded.encode())
            media = "application/x-www-form-base64-encoded"
        else:  # older mod_json_cdr, encode=false: the JSON as x-www-form-plaintext
            content, media = encoded.encode(), "application/x-www-form-plaintext"
        response = pipeline.ingest.post(
            "/v1/adapters/freeswitch/cdr",
            params={"uuid": leg["variables"]["uuid"]},
            content=content,
            headers={"content-type": media},
        )
        assert response.status_code == 200, (style, response.text)
    bad = pipeline.ingest.post(
        "/v1/adapters/freeswitch/cdr",
        content=b"cdr=@@not base64@@",
        headers={"content-type": "application/x-www-form-base64-encoded"},
    )
    assert bad.status_code == 422
    assert "base64" in bad.json()["error"]["message"]
    pipeline.wait_caught_up()
    fs_truth = floor.truth(calls, sales=False, contact_from_code=False)
    assert_truth(pipeline, fs_truth)

    # Firehose with Content-Encoding: gzip (its HTTP endpoint's GZIP option).
    connect_calls = floor.generate(9, DAY_START, 60)
    records = [r for c in connect_calls for r in floor.connect_records(c)]
    for number, start in enumerate(range(0, len(records), 25)):
        request = floor.firehose_request(records[start : start + 25], f"gz-{number}")
        response = pipeline.ingest.post(
            "/v1/adapters/connect/firehose",
            content=gzip.compress(json.dumps(request).encode()),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["requestId"] == f"gz-{number}"
    not_gzip = pipeline.ingest.post(
        "/v1/adapters/connect/firehose",
        content=json.dumps(floor.firehose_request(records[:1], "gz-bad")).encode(),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert not_gzip.status_code == 400
    assert not_gzip.json()["errorMessage"] == "the body is not valid gzip"
    pipeline.wait_caught_up()
    connect_truth = floor.truth(connect_calls)
    both = {k: fs_truth.get(k, 0) + connect_truth.get(k, 0) for k in KEYS}
    print("freeswitch + connect", assert_truth(pipeline, both))

    # A batch as large as Firehose's default 5 MiB buffer and over /v1/events' limits (body
    # and events per request): Firehose takes a 413 as permanent and drops the batch, so the
    # route takes it whole. 5,100 sales, each a call and a sale: 10,200 events in 9 MB.
    def sold(number: int) -> dict[str, Any]:
        at = (DAY_START + timedelta(seconds=number)).astimezone(ZoneInfo("UTC"))
        return {
            "ContactId": f"big-{number}",
            "Channel": "VOICE",
            "InitiationMethod": "OUTBOUND",
            "InitiationTimestamp": at.isoformat(),
            "ConnectedToSystemTimestamp": at.isoformat(),
            "DisconnectTimestamp": (at + timedelta(seconds=60)).isoformat(),
            "LastUpdateTimestamp": (at + timedelta(seconds=90)).isoformat(),
            "Agent": {"Username": "fh-big", "AgentInteractionDuration": 60},
            "Attributes": {
                "lead_id": f"L-big-{number}",
                "disposition": "SALE",
                "amount": "10.25",
                "notes": "n" * 1000,
            },
        }

    big = json.dumps(floor.firehose_request([sold(n) for n in range(5100)], "big")).encode()
    assert len(big) > 5 * 1024 * 1024
    response = pipeline.ingest.post(
        "/v1/adapters/connect/firehose",
        content=big,
        headers={"content-type": "application/json"},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:500]
    pipeline.wait_caught_up()
    day = DAY_START.replace(hour=0)
    (row,) = pipeline.metrics(
        **{
            "from": day.isoformat(),
            "to": (day + timedelta(days=1)).isoformat(),
            "agent_id": "fh-big",
            "metrics": "dials,connects,sales,revenue",
        }
    )["rows"]
    assert (row["dials"], row["connects"], row["sales"]) == (5100, 5100, 5100)
    assert Decimal(row["revenue"]) == Decimal("10.25") * 5100


PUBLIC = "https://callboard.example.com"


def test_twilio_public_base_url_json_bodies_and_hmac_sha256(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(**ENV, CALLBOARD_PUBLIC_BASE_URL=PUBLIC + "/")
    path = "/v1/adapters/twilio/status"
    query = {"agent_id": "agent-1", "team_id": "team-1", "lead_id": "L-json"}
    form = {
        "CallSid": "CA" + "3" * 32,
        "CallStatus": "completed",
        "CallDuration": "42",
        "Direction": "outbound-api",
        "SequenceNumber": "3",
        "Timestamp": "Mon, 02 Nov 2026 02:00:42 +0000",
    }
    local_url = f"http://127.0.0.1:{pipeline.ingest_port}{path}?{urlencode(query)}"
    public_url = f"{PUBLIC}{path}?{urlencode(query)}"

    # Signed for the URL Twilio requested (the public one): taken; for the local URL: 403.
    def post_form(url_signed: str, data: dict[str, str]) -> httpx.Response:
        signature = floor.twilio_signature(TOKEN, url_signed, data)
        return pipeline.ingest.post(
            f"{path}?{urlencode(query)}", data=data, headers={"X-Twilio-Signature": signature}
        )

    refused = post_form(local_url, form)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["url_checked"] == PUBLIC + path
    assert post_form(public_url, form).status_code == 200

    # A JSON body: Twilio adds bodySHA256 (hex SHA-256 of the body) and signs the URL alone.
    body = json.dumps({**form, "CallSid": "CA" + "4" * 32, "CallDuration": "18"}).encode()
    json_query = {**query, "lead_id": "L-json-2", "bodySHA256": hashlib.sha256(body).hexdigest()}
    signature = floor.twilio_signature(TOKEN, f"{PUBLIC}{path}?{urlencode(json_query)}", {})
    headers = {"X-Twilio-Signature": signature, "content-type": "application/json"}
    taken = pipeline.ingest.post(f"{path}?{urlencode(json_query)}", content=body, headers=headers)
    assert taken.status_code == 200, taken.text
    tampered = pipeline.ingest.post(
        f"{path}?{urlencode(json_query)}", content=body.replace(b"18", b"81"), headers=headers
    )
    assert tampered.status_code == 403
    unsigned_json = pipeline.ingest.post(
        f"{path}?{urlencode(query)}", content=body, headers=headers
    )
    assert unsigned_json.status_code == 403

    # The HMAC-SHA256 variant, announced by X-Twilio-Webhooks-Signature-Settings.
    sha256_form = {**form, "CallSid": "CA" + "5" * 32, "CallDuration": "30"}
    sha256_query = {**query, "lead_id": "L-json-3"}
    signed = f"{PUBLIC}{path}?{urlencode(sha256_query)}" + "".join(
        f"{name}{sha256_form[name]}" for name in sorted(sha256_form)
    )
    digest = hmac.new(TOKEN.encode(), signed.encode(), hashlib.sha256).digest()
    sha256_headers = {
        "X-Twilio-Signature": base64.b64encode(digest).decode(),
        "X-Twilio-Webhooks-Signature-Settings": "key=,algorithm=HMAC_SHA256",
    }
    response = pipeline.ingest.post(
        f"{path}?{urlencode(sha256_query)}", data=sha256_form, headers=sha256_headers
    )
    assert response.status_code == 200, response.text
    unknown = pipeline.ingest.post(
        f"{path}?{urlencode(sha256_query)}",
        data=sha256_form,
        headers={**sha256_headers, "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5"},
    )
    assert unknown.status_code == 403

    pipeline.wait_caught_up()
    # Three answered outbound calls of one agent: 42 + 18 + 30 s of talk.
    assert_truth(
        pipeline,
        {"dials": 3, "connects": 3, "contacts": 3, "drops": 0, "talk_seconds": 42 + 18 + 30},
    )
