"""``callboard demo`` end to end: its own Kafka and services, live numbers, nothing left behind.

The demo runs as a subprocess in a temporary working directory, so its ``.callboard/demo``
state stays out of the repository; its output is not a terminal, so it prints plain
summary lines and a final dashboard.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console

from devstack.demo import DemoOptions, DemoView, FeedStats, Snapshot, render_dashboard
from devstack.processes import port_in_use

REPO = Path(__file__).resolve().parents[2]
STACK_LINE = re.compile(
    r"ingest http://127\.0\.0\.1:(\d+), api http://127\.0\.0\.1:(\d+), kafka 127\.0\.0\.1:(\d+)"
)
SUMMARY_DIALS = re.compile(r"\] events .* · dials ([\d,]+) ·")
LEADER_ROW = re.compile(r"^\s+1\s+\S+\s+agent-\d\d-\d\d\s+team-\d\d\s+¥[\d,]+\.\d\d\s*$", re.M)


def _demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", "demo", "--teams", "2", "--seed", "7", *args]


def _demo_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CALLBOARD_DEMO_STATE_DIR", "CALLBOARD_DEMO_SECONDS")
    }
    pythonpath = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    # Narrower than the two columns side by side (about 120, with the numbers' widths), so
    # the leaderboard's rows are lines of their own whatever the floor sold.
    return {**env, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}


def _processes_under(directory: Path) -> list[str]:
    """Running processes whose working directory or command line is inside directory."""
    found: list[str] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(str(directory)) or str(directory) in cmdline):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _dials_seen(output: str) -> list[int]:
    return [int(d.replace(",", "")) for d in SUMMARY_DIALS.findall(output)]


def _assert_nothing_left(workdir: Path, output: str) -> None:
    ports = STACK_LINE.search(output)
    assert ports is not None, output
    assert [int(p) for p in ports.groups() if port_in_use(int(p))] == []
    assert _processes_under(workdir) == []
    assert not (workdir / ".callboard" / "demo" / "demo.pid").exists()
    assert list((workdir / ".callboard" / "demo").glob("*.pid")) == []


def test_demo_runs_for_its_seconds_shows_live_numbers_and_stops_everything(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        _demo_command("--seconds", "10"),
        cwd=tmp_path,
        env=_demo_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "error:" not in output, output
    dials = _dials_seen(output)
    assert dials and dials[-1] > 0, output
    assert re.search(r"外拨次数\s+dials\s+[1-9][\d,]*", output), output
    assert "leaderboard: top 10 by revenue" in output
    assert LEADER_ROW.search(output), output
    assert "demo over:" in output
    assert (tmp_path / ".callboard" / "demo" / "callboard.db").exists()
    assert not (tmp_path / ".callboard" / "postgres").exists()
    # The demo's bootstrap admin key: kept for its owner only, and said where.
    key_file = tmp_path / ".callboard" / "demo" / "admin_key"
    assert "admin key in" in output and key_file.stat().st_mode & 0o777 == 0o600
    # The wallboard's address, its read key in the fragment, and the numbers read with it.
    assert re.search(r"wallboard: http://127\.0\.0\.1:\d+/board#key=\S{32,} ", output), output
    _assert_nothing_left(tmp_path, output)


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    log_path = tmp_path / "demo.log"
    with log_path.open("w") as log:
        demo = subprocess.Popen(
            _demo_command(),
            cwd=tmp_path,
            env=_demo_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not any(dials > 0 for dials in _dials_seen(log_path.read_text())):
            assert demo.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        demo.send_signal(signal.SIGINT)
        returncode = demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            # SIGTERM lets the demo stop what it started; SIGKILL would orphan it.
            demo.terminate()
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    output = log_path.read_text()

    assert returncode == 0, output
    assert "interrupted" in output
    assert "demo over:" in output
    _assert_nothing_left(tmp_path, output)


def test_dashboard_labels_kpis_in_chinese_and_english_and_marks_rank_changes() -> None:
    snapshot = Snapshot(
        taken_at=100.0,
        taken_wall=datetime(2024, 5, 1, 10, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
        totals={"dials": 120, "connects": 54, "revenue": "1250.50", "connect_rate": 0.45},
        teams=[{"team_id": "team-01", "dials": 120, "revenue": "1250.50", "connect_rate": None}],
        leaderboard=[
            {
                "rank": 1,
                "agent_id": "agent-01-02",
                "team_id": "team-01",
                "value": "1000.00",
                "rank_change": 2,
            },
            {
                "rank": 2,
                "agent_id": "agent-01-01",
                "team_id": "team-01",
                "value": "250.50",
                "rank_change": -1,
            },
            {
                "rank": 3,
                "agent_id": "agent-01-03",
                "team_id": "team-01",
                "value": "0.00",
                "rank_change": None,
            },
        ],
        lag={"status": "ok", "partitions": [{"lag": 3, "lag_seconds": 0.4}]},
        earlier_totals={"dials": 100, "revenue": "250.50"},
        earlier_at=40.0,
    )
    view = DemoView(
        options=DemoOptions(teams=1, agents_per_team=3),
        seed=7,
        uptime=61.0,
        remaining=None,
        feed=FeedStats(calls=120, sent=400, accepted=400),
        snapshot=snapshot,
        problem=None,
        now=100.5,
        urls={"ingest": "http://i", "api": "http://a", "kafka": "k:1", "database": "sqlite x"},
        currency="¥",
        timezone="Asia/Shanghai",
    )
    narrow = Console(width=100, record=True, file=io.StringIO())
    narrow.print(render_dashboard(view, narrow))
    text = narrow.export_text()
    wide = Console(width=140, record=True, file=io.StringIO())
    wide.print(render_dashboard(view, wide))

    assert re.search(r"外拨次数\s+dials\s+120\s+\+20\s*$", text, re.M), text
    assert re.search(r"销售额\s+revenue\s+¥1,250\.50\s+\+¥1,000\.00\s*$", text, re.M), text
    assert re.search(r"通话接通率\s+connect rate\s+45\.0%\s*$", text, re.M), text
    assert "▲2" in text and "▼1" in text
    # An agent without sales does not rank; a ratio without denominator reads as a dash.
    assert "agent-01-03" not in text
    assert re.search(r"^ team-01\s+120\s+—\s+—\s+¥1,250\.50\s*$", text, re.M), text
    assert "numbers as of 10:00:00 CST (0.5 s ago) · pipeline lag 3 events, 0.4 s (ok)" in text
    # The leaderboard goes beside the totals when the terminal has room for both.
    assert re.search(r"今日全场 floor today\s+销售额排行榜 leaderboard", wide.export_text())
    assert not re.search(r"今日全场 floor today\s+销售额排行榜 leaderboard", text)
