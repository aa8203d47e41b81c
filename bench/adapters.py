"""Adapter benchmark: native records per second on one ingest worker, beside native v1.

Each case posts a generated floor's records with 4 concurrent clients to one ingest
process (one worker) and counts what it acknowledged (stored in Kafka):

- native v1, one event per request, beside the adapters that get one record per request
  (Twilio callbacks, VICIdial URLs, FreeSWITCH CDRs);
- native v1 in batches of 500 events, beside Firehose requests of 500 contact records and
  the Asterisk importer (``callboard import --format asterisk-cdr``, 1,000 events a batch).

The cases run in rounds, each adapter interleaved with native v1, and the medians are
compared: one line per adapter with its rate, the native rate of the same rounds, the ratio
(the adapter's cost per event relative to native v1), and the ingest worker's CPU time per
event on both sides, which a loaded machine disturbs less than the rates.

Kafka comes from ``CALLBOARD_BENCH_KAFKA_BOOTSTRAP_SERVERS`` when set, else is started
locally like the tests do. Auth is off: ingest reads no key table, so no database is needed.

    python -m bench.adapters --calls 2000 --batch-calls 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx

from devstack.kafka import KafkaBroker
from devstack.processes import free_port
from services.ingest.adapters import connect
from services.ingest.adapters.common import AdapterContext
from shared.kafka import ensure_topic
from tests import adapter_floor as floor

REPO = Path(__file__).resolve().parent.parent
ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 2, 9, 0, tzinfo=ZONE)
TOKEN = "bench-twilio-token"
SECRET = "bench-lead-id-secret-0123456789"
CLIENTS = 4

Request = Callable[[httpx.Client], int]


def _say(message: str) -> None:
    print(message, flush=True)


def _run(requests: Sequence[Request]) -> float:
    """Seconds to send every request with ``CLIENTS`` clients; each must succeed."""
    chunks = [list(requests[i::CLIENTS]) for i in range(CLIENTS)]

    def work(chunk: list[Request]) -> None:
        with httpx.Client(timeout=60) as client:
            for request in chunk:
                status = request(client)
                if status not in (200, 202):
                    raise RuntimeError(f"answered {status}")

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(work, chunks))
    return time.perf_counter() - started


def _post(url: str, **kwargs: Any) -> Request:
    def request(client: httpx.Client) -> int:
        return client.post(url, **kwargs).status_code

    return request


def _get(url: str, **kwargs: Any) -> Request:
    def request(client: httpx.Client) -> int:
        return client.get(url, **kwargs).status_code

    return request


JSON = {"content-type": "application/json"}


def _json(value: Any) -> bytes:
    """A body encoded before the clock starts: the clients share the machine's cores."""
    return json.dumps(value).encode()


def _native_events(calls: list[floor.Call]) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"bench-{uuid.uuid4().hex}",
            "type": "call.completed",
            "occurred_at": c.start.isoformat(),
            "agent_id": c.agent,
            "team_id": c.team,
            "call_id": f"bench-{c.index}-{uuid.uuid4().hex[:8]}",
            "lead_id": f"L{c.index}",
            "answered": c.talk > 0,
            "talk_seconds": c.talk,
        }
        for c in calls
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000, help="one record per request")
    parser.add_argument("--batch-calls", type=int, default=20000, help="batched cases")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    bootstrap = os.environ.get("CALLBOARD_BENCH_KAFKA_BOOTSTRAP_SERVERS")
    broker: KafkaBroker | None = None
    if not bootstrap:
        broker = KafkaBroker(workdir / "kafka", port=free_port(), num_partitions=6)
        broker.start(timeout=120)
        bootstrap = broker.bootstrap_servers
    try:
        _with_broker(bootstrap, workdir, args.calls, args.batch_calls, args.rounds)
    finally:
        if broker is not None:
            broker.stop()


def _with_broker(bootstrap: str, workdir: Path, calls: int, batch_calls: int, rounds: int) -> None:
    topic = f"bench-adapters-{uuid.uuid4().hex[:8]}"
    ensure_topic([bootstrap], topic, 6)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CALLBOARD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CALLBOARD_EVENTS_TOPIC": topic,
        "CALLBOARD_LOG_LEVEL": "WARNING",
        "CALLBOARD_AUTH_MODE": "off",
        "CALLBOARD_RATE_LIMIT_PER_SECOND": "0",
        "CALLBOARD_LEAD_ID_SECRET": SECRET,
        "CALLBOARD_TWILIO_AUTH_TOKEN": TOKEN,
    }
    with (workdir / "ingest.log").open("ab") as log:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "ingest", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        _bench(base, env, calls, batch_calls, workdir, rounds, ingest.pid)
    finally:
        ingest.terminate()
        ingest.wait(timeout=20)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process used so far: the ingest worker's cost, which the
    other work on a shared machine does not inflate as it does wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Case:
    """One measured case: ``records`` native records giving ``events`` v1 events a round."""

    name: str
    unit: str
    records: int
    events: int
    run: Callable[[], float]
    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def measure(self, ingest_pid: int) -> None:
        cpu = _cpu_seconds(ingest_pid)
        seconds = self.run()
        self.cpu.append((_cpu_seconds(ingest_pid) - cpu) / self.events)
        self.rates.append(self.events / seconds)

    @property
    def rate(self) -> float:
        """Median events per second over the rounds."""
        return statistics.median(self.rates)

    @property
    def cpu_per_event(self) -> float:
        return statistics.median(self.cpu)


def _bench(
    base: str,
    env: dict[str, str],
    count: int,
    batch_count: int,
    workdir: Path,
    rounds: int,
    ingest_pid: int,
) -> None:
    calls = floor.generate(7, START, count)
    rng = random.Random(7)

    # One record per request.
    native = _native_events(calls)
    single: list[Request] = [_post(f"{base}/v1/events", json=e) for e in native]

    callbacks = [cb for call in calls for cb in floor.twilio_callbacks(call, rng)][:count]
    twilio: list[Request] = []
    for query, form in callbacks:
        url = f"{base}/v1/adapters/twilio/status?{urlencode(query)}"
        signature = floor.twilio_signature(TOKEN, url, form)
        twilio.append(_post(url, data=form, headers={"X-Twilio-Signature": signature}))

    urls = [u for call in calls for u in floor.vicidial_urls(call)][:count]
    vicidial: list[Request] = [_get(f"{base}/v1/adapters/vicidial/{r}", params=q) for r, q in urls]

    legs = [
        leg
        for call in calls
        if call.outcome not in ("machine", "drop")
        for leg in floor.freeswitch_legs(call)
    ][:count]
    freeswitch: list[Request] = [
        _post(f"{base}/v1/adapters/freeswitch/cdr", json=leg) for leg in legs
    ]

    # Batches: a larger floor, so that each case runs for seconds. Ingest does not
    # deduplicate, so each round may post the same events again.
    calls = floor.generate(8, START, batch_count)
    native = _native_events(calls)
    batches = [
        _post(f"{base}/v1/events", content=_json(native[i : i + 500]), headers=JSON)
        for i in range(0, len(native), 500)
    ]

    records = [r for call in calls for r in floor.connect_records(call)][::2]
    firehose: list[Request] = []
    for i in range(0, len(records), 500):
        body = {
            "requestId": str(uuid.uuid4()),
            "timestamp": 0,
            "records": [
                {"data": base64.b64encode(json.dumps(r).encode()).decode()}
                for r in records[i : i + 500]
            ],
        }
        firehose.append(
            _post(f"{base}/v1/adapters/connect/firehose", content=_json(body), headers=JSON)
        )

    # The same facts posted as v1 by an integrator who translated them: Firehose's cost
    # against these is what the adapter itself adds (decoding and translating).
    context = AdapterContext.create("Asia/Shanghai", SECRET)
    translated = [e for r in records for e in connect.translate(r, context)]
    same_events = [
        _post(f"{base}/v1/events", content=_json(translated[i : i + 500]), headers=JSON)
        for i in range(0, len(translated), 500)
    ]

    agents = 4
    lines = [
        line
        for call in calls
        if call.outcome
        in ("human", "busy", "no_answer", "failed", "inbound_human", "inbound_abandoned")
        for line in floor.asterisk_lines(call, ZONE, agents)
    ]
    master = workdir / "Master.csv"
    master.write_text("\n".join(lines) + "\n")
    roster = workdir / "roster.toml"
    roster.write_text(
        "[extensions]\n" + "".join(f'"10{n:02d}" = "agent-{n}"\n' for n in range(agents))
    )

    def asterisk() -> float:
        # The time includes the importer's own start (about a second of Python imports).
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "import",
                "--format",
                "asterisk-cdr",
                str(master),
                "--roster",
                str(roster),
                "--ingest-url",
                base,
            ],
            cwd=REPO,
            env={**env, "CALLBOARD_TIMEZONE": "Asia/Shanghai"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        return time.perf_counter() - started

    native_single = Case(
        "native v1, 1 event/request", "events", len(single), len(single), partial(_run, single)
    )
    native_batch = Case(
        "native v1, 500 events/request", "events", len(native), len(native), partial(_run, batches)
    )
    native_connect = Case(
        "native v1, Connect's events, 500/request",
        "events",
        len(translated),
        len(translated),
        partial(_run, same_events),
    )
    # (case, the native case it is compared with); every VICIdial URL and Asterisk line
    # gives two events (its call's start and its result).
    adapters = [
        (
            Case(
                "Twilio status callbacks",
                "callbacks",
                len(twilio),
                len(twilio),
                partial(_run, twilio),
            ),
            native_single,
        ),
        (
            Case(
                "VICIdial URLs", "URLs", len(vicidial), 2 * len(vicidial), partial(_run, vicidial)
            ),
            native_single,
        ),
        (
            Case(
                "FreeSWITCH CDRs",
                "CDRs",
                len(freeswitch),
                len(freeswitch),
                partial(_run, freeswitch),
            ),
            native_single,
        ),
        (
            Case(
                "Firehose contact records, 500/request",
                "records",
                len(records),
                len(records),
                partial(_run, firehose),
            ),
            native_batch,
        ),
        (
            Case(
                "Asterisk Master.csv lines (importer)",
                "lines",
                len(lines),
                2 * len(lines),
                asterisk,
            ),
            native_batch,
        ),
    ]
    # Each side interleaved with the other, round after round, so that the load of a shared
    # machine falls on both alike; the medians are compared.
    cases = (native_single, native_batch, native_connect, *(c for c, _ in adapters))
    for case in cases:  # a first round warms the worker (imports, connections), not counted
        case.run()
    for number in range(1, rounds + 1):
        for case in cases:
            case.measure(ingest_pid)
        _say(f"round {number}/{rounds} done")

    _say("")
    _say(f"median of {rounds} interleaved rounds; one ingest worker; ratio = cost per event")
    _say("against native v1 measured in the same rounds (events/s native / events/s adapter;")
    _say("above 1 costs more); CPU = the ingest worker's CPU time per event")
    for case in (native_single, native_batch, native_connect):
        _say(
            f"{case.name:<40} {case.rate:>9,.0f} events/s"
            f"  CPU {case.cpu_per_event * 1e6:6.0f} us/event"
        )
    firehose_case = adapters[3][0]
    adapters.append((firehose_case, native_connect))
    for case, reference in adapters:
        records_rate = case.rate * case.records / case.events
        cpu_ratio = (
            f"{case.cpu_per_event / reference.cpu_per_event:5.2f}"
            if reference.cpu_per_event
            else "  n/a"
        )
        name = (
            case.name if reference is not native_connect else "  the same, against Connect's events"
        )
        _say(
            f"{name:<40} {records_rate:>9,.0f} {case.unit}/s"
            f" = {case.rate:>8,.0f} events/s | native {reference.rate:>8,.0f} events/s"
            f" | ratio {reference.rate / case.rate:5.2f}"
            f" | CPU {case.cpu_per_event * 1e6:5.0f} vs {reference.cpu_per_event * 1e6:5.0f}"
            f" us/event, ratio {cpu_ratio}"
        )
    _say("")
    _say("every round's events/s (the spread a shared machine gives):")
    for case in (native_single, native_batch, native_connect, *(c for c, _ in adapters[:-1])):
        _say(f"  {case.name:<40} " + ", ".join(f"{r:,.0f}" for r in case.rates))


if __name__ == "__main__":
    main()
