"""The operator commands find the local stack, and say in one line when no database answers.

The first test types the README's command lines (those of its tour read from README.md),
as a new user does after ``make up``, against a stack started by ``callboard up`` with no
``CALLBOARD_*`` setting in the environment of any command after it. ``make up`` is
``callboard up`` on the fixed ports 9092, 5432, 8001 and 8000, which another stack or test
run on this machine may hold; the test starts the same stack on free ports instead
(``callboard up --kafka-port ...``, the only difference), in a temporary folder whose
``.callboard`` holds its state.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer

from devstack.processes import free_port
from services.operator.env import RecordedStack, find_state_dir, use_local_stack

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MAPPING = REPO / "mappings" / "uci-bank-marketing.toml"
CALLBOARD = Path(sys.executable).with_name("callboard")

# A few rows in the shape of the UCI Bank Marketing file (bank-full.csv), May–June 2008.
UCI_ROWS = [
    {"day": "5", "month": "may", "contact": "cellular", "duration": "261", "y": "no"},
    {"day": "5", "month": "may", "contact": "telephone", "duration": "151", "y": "yes"},
    {"day": "6", "month": "may", "contact": "cellular", "duration": "76", "y": "no"},
    {"day": "9", "month": "may", "contact": "unknown", "duration": "92", "y": "yes"},
    {"day": "3", "month": "jun", "contact": "cellular", "duration": "198", "y": "no"},
    {"day": "4", "month": "jun", "contact": "cellular", "duration": "1002", "y": "yes"},
    {"day": "4", "month": "jun", "contact": "telephone", "duration": "40", "y": "no"},
]


def _user_env(**extra: str) -> dict[str, str]:
    """A shell with no CALLBOARD_* setting, as a new user has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    pythonpath = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra}


def _readme_lines(prefix: str) -> list[str]:
    """README.md's command lines that start with ``prefix``, as typed: comments left out."""
    lines = README.read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.startswith(prefix)]


def _callboard(
    line: str, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a README command line (``.venv/bin/callboard ...``) as typed, from cwd."""
    args = shlex.split(line)
    assert args[0].endswith("callboard"), line
    program = [str(CALLBOARD)] if CALLBOARD.exists() else [sys.executable, "-m", "services.cli"]
    return subprocess.run(
        [*program, *args[1:]],
        cwd=cwd,
        env=_user_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def local_stack() -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """``callboard up`` on free ports in a new folder; ``callboard down`` at the end.

    The folder is outside pytest's temporary tree: a concurrent pytest run resets that tree
    to 0700, which would lock PostgreSQL's unprivileged server user out of its data.
    """
    folder = Path(tempfile.mkdtemp(prefix="callboard-test-stack-"))
    try:
        yield from _stack_in(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stack_in(folder: Path) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    ports = {name: free_port() for name in ("kafka", "postgres", "ingest", "api")}
    up = _callboard(
        f"callboard up --kafka-port {ports['kafka']} --postgres-port {ports['postgres']} "
        f"--ingest-port {ports['ingest']} --api-port {ports['api']} --timeout 120",
        folder,
        timeout=400,
    )
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield folder, up
    finally:
        down = _callboard("callboard down", folder, timeout=120)
        assert down.returncode == 0, down.stderr[-3000:]


@pytest.mark.timeout(900)
def test_readme_command_lines_reach_the_stack_callboard_up_started(
    local_stack: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, up = local_stack
    stack = RecordedStack.read(folder / ".callboard")
    assert stack is not None
    ports = json.loads((folder / ".callboard" / "ports.json").read_text())
    assert stack.database_url.startswith("postgresql+psycopg://")
    assert f":{ports['postgres']}/" in stack.database_url
    assert stack.kafka_bootstrap_servers == f"127.0.0.1:{ports['kafka']}"
    assert stack.api_url == f"http://127.0.0.1:{ports['api']}"

    # The command `callboard up` prints, as printed.
    printed = re.search(r"`(callboard keys create --name NAME --scope ingest)`", up.stderr)
    assert printed is not None, up.stderr
    created = _callboard(printed.group(1).replace("NAME", "first-dialer"), folder)
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"cb_[0-9a-f]{12}_\S+", created.stdout.strip()), created.stdout
    assert "Traceback" not in created.stderr

    # The README's tour: an ingest key, a read key, the list.
    create_ingest, create_read, list_keys = _readme_lines(".venv/bin/callboard keys ")
    assert "--name dialer-floor-2 --scope ingest" in create_ingest
    assert "--name floor-wallboard --scope read" in create_read
    created = _callboard(create_ingest, folder)
    assert created.returncode == 0, created.stderr
    ingest_key = created.stdout.strip()
    assert re.fullmatch(r"cb_[0-9a-f]{12}_\S+", ingest_key), created.stdout

    created = _callboard(create_read, folder)
    assert created.returncode == 0, created.stderr
    read_key = created.stdout.strip()

    listed = _callboard(list_keys, folder)
    assert listed.returncode == 0, listed.stderr
    for name, key in (("dialer-floor-2", ingest_key), ("floor-wallboard", read_key)):
        key_id = key.split("_")[1]
        assert re.search(rf"{key_id}.*{name}", listed.stdout), listed.stdout

    # A history import; ingest now needs the ingest key (auth mode auto).
    data = folder / "bank-small.csv"
    with data.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(UCI_ROWS[0]))
        writer.writeheader()
        writer.writerows(UCI_ROWS)
    imported = _callboard(
        f".venv/bin/callboard import {data} --mapping {MAPPING}",
        folder,
        CALLBOARD_API_KEY=ingest_key,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]

    # What the dashboard reads: every row a dial, every "yes" a sale.
    dials = len(UCI_ROWS)
    sales = sum(row["y"] == "yes" for row in UCI_ROWS)
    url = (
        f"{stack.api_url}/v1/metrics?from=2008-05-01T00:00:00%2B01:00"
        "&to=2010-12-01T00:00:00Z&metrics=dials,sales"
    )
    seen: dict[str, object] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(url, headers={"Authorization": f"Bearer {read_key}"}, timeout=5)
        assert answer.status_code == 200, answer.text
        rows = answer.json()["rows"]
        seen = rows[0] if rows else {}
        if seen.get("dials") == dials:
            break
        time.sleep(0.5)
    assert (seen.get("dials"), seen.get("sales")) == (dials, sales)

    # A record that is not an event, straight to the topic: the aggregator sets it aside.
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers, acks="all")
    try:
        sent = producer.send("callboard.events", key=b"poison", value=b"not json").get(timeout=30)
    finally:
        producer.close(timeout=10)
    letters: list[dict[str, object]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        listed = _callboard(".venv/bin/callboard dead-letters list --json", folder)
        assert listed.returncode == 0, listed.stderr
        letters = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        if letters:
            break
        time.sleep(1)
    assert len(letters) == 1, letters
    assert letters[0]["event_id"] is None
    assert letters[0]["source"] == f"callboard.events/{sent.partition}/{sent.offset}"
    table = _callboard(".venv/bin/callboard dead-letters list", folder)
    assert table.returncode == 0 and "1 dead letters" in table.stderr, table.stderr


def _closed_postgres_url() -> str:
    return f"postgresql+psycopg://callboard:callboard@127.0.0.1:{free_port()}/callboard"


@pytest.mark.parametrize(
    "line",
    [
        "callboard keys list",
        "callboard keys create --name floor --scope ingest",
        "callboard keys revoke 3f9c0a1b2c4d",
        "callboard migrate",
    ],
)
def test_no_database_answering_is_one_line_and_a_failure(tmp_path: Path, line: str) -> None:
    url = _closed_postgres_url()
    done = _callboard(line, tmp_path, timeout=60, CALLBOARD_DATABASE_URL=url)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert lines[0].startswith("error: no database answers at postgresql+psycopg://")
    assert f"127.0.0.1:{port}/callboard" in lines[0]
    assert "callboard:callboard@" not in lines[0]  # the password is not shown
    assert "make up" in lines[0]


def test_a_stopped_recorded_stack_is_named_in_one_line(tmp_path: Path) -> None:
    database_port = free_port()
    RecordedStack(
        database_url=f"postgresql+psycopg://callboard@127.0.0.1:{database_port}/callboard",
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        ingest_url=f"http://127.0.0.1:{free_port()}",
        api_url=f"http://127.0.0.1:{free_port()}",
    ).write(_state_dir(tmp_path))
    below = tmp_path / "mappings"
    below.mkdir()
    done = _callboard("callboard keys list", below, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{database_port}/callboard" in lines[0]


def test_no_broker_answering_is_one_line_and_a_failure(tmp_path: Path) -> None:
    servers = f"127.0.0.1:{free_port()}"
    done = _callboard(
        "callboard dead-letters list",
        tmp_path,
        timeout=120,
        CALLBOARD_KAFKA_BOOTSTRAP_SERVERS=servers,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: no Kafka broker answers at {servers}: start the local stack with `make up` "
        "(or `callboard up`), or set CALLBOARD_KAFKA_BOOTSTRAP_SERVERS to a running broker"
    ]


def test_no_database_setting_and_no_stack_says_what_to_do(tmp_path: Path) -> None:
    done = _callboard("callboard keys list", tmp_path, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the database sqlite:///./callboard.db has no Callboard")
    assert "callboard migrate" in lines[0] and "make up" in lines[0]


def _state_dir(folder: Path) -> Path:
    state_dir = folder / ".callboard"
    state_dir.mkdir()
    return state_dir


def test_settings_given_win_over_the_recorded_stack(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    recorded = RecordedStack(
        database_url="postgresql+psycopg://callboard@127.0.0.1:15999/callboard",
        kafka_bootstrap_servers="127.0.0.1:15998",
        ingest_url="http://127.0.0.1:15997",
        api_url="http://127.0.0.1:15996",
    )
    recorded.write(_state_dir(repo))
    (repo / ".env").write_text("callboard_kafka_bootstrap_servers=kafka.internal:9092\n")
    environ = {"CALLBOARD_DATABASE_URL": "postgresql+psycopg://db.internal/callboard"}

    assert use_local_stack(environ, cwd=repo) == recorded
    assert environ == {
        "CALLBOARD_DATABASE_URL": "postgresql+psycopg://db.internal/callboard",
        "CALLBOARD_INGEST_URL": "http://127.0.0.1:15997",
    }

    nested = repo / "mappings" / "more"
    nested.mkdir(parents=True)
    assert find_state_dir(nested) == repo / ".callboard"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    untouched: dict[str, str] = {}
    assert use_local_stack(untouched, cwd=elsewhere) is None
    assert untouched == {}
