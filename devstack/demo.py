"""``callboard demo``: the whole pipeline on this machine, fed by a simulated call floor.

The demo starts Kafka and the three services under a state directory of its own
(``.callboard/demo``, on free ports, with a SQLite database there), so it neither needs
PostgreSQL nor disturbs a stack that ``callboard up`` runs. A feeder thread posts the
calls of :class:`~devstack.simulator.FloorSimulator` to the ingest service at a
live pace, a poller thread reads the API about once a second, and the terminal shows the
floor's totals, the teams and the revenue leaderboard until the time is up or Ctrl-C.
Whatever way it ends, everything the demo started is stopped before it returns.

Each run starts from an empty broker and database, plus yesterday's calls of the same
floor (posted first) so that the leaderboard's rank changes against yesterday mean
something.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import time as clock_time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from pydantic import ValidationError
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devstack.kafka import create_topic
from devstack.processes import DevstackError, free_port, live_pid, tail, write_pid
from devstack.simulator import FloorShape, FloorSimulator
from devstack.stack import SERVICE_NAMES, LocalStack, StackPorts
from shared.kpis import COUNTERS, LEAD_COUNTS, RATIOS, Unit
from shared.settings import CommonSettings

DEFAULT_DEMO_DIR = Path(".callboard") / "demo"
EVENTS_TOPIC = "callboard.events"
EVENTS_PARTITIONS = 3
# Each agent starts a call every few seconds on average: a floor compressed in time, so
# that the numbers move on every refresh.
CALL_EVERY_SECONDS = 3.0
# A campaign on a good day (warm leads, renewals): more quotes and closes than the
# simulator's cold-calling default, so the leaderboard fills within the first minute.
DEMO_QUOTE_RATE = 0.4
DEMO_CLOSE_RATE = 0.45
FEED_TICK_SECONDS = 0.5
# After a call an agent wraps up, or now and then takes a pause (the wallboard's grid).
PAUSE_CHANCE = 0.01
PAUSE_REASONS = ("break", "training", "meeting", "lunch")
MAX_EVENTS_PER_REQUEST = 2000
BACKFILL_CALLS_PER_AGENT = 25
REFRESH_SECONDS = 1.0
PLAIN_SUMMARY_SECONDS = 5.0
HEALTH_CHECK_SECONDS = 2.0
DELTA_WINDOW_SECONDS = 60.0
LEADERBOARD_SIZE = 10

TOTAL_METRICS = (
    "dials",
    "connects",
    "contacts",
    "talk_seconds",
    "quotes",
    "sales",
    "revenue",
    "connect_rate",
    "contact_rate",
    "quote_rate",
    "close_rate",
    "avg_talk_seconds",
)
TEAM_METRICS = ("dials", "connect_rate", "sales", "revenue")
KPI_NAME_ZH: dict[str, str] = {
    **{c.key: c.name_zh for c in COUNTERS},
    **{c.key: c.name_zh for c in LEAD_COUNTS},
    **{r.key: r.name_zh for r in RATIOS},
}
KPI_UNIT: dict[str, Unit] = {
    **{c.key: c.unit for c in COUNTERS},
    **{c.key: Unit.count for c in LEAD_COUNTS},
    **{r.key: r.unit for r in RATIOS},
}
ADDITIVE_KPIS = frozenset(c.key for c in COUNTERS)
CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "JP¥", "HKD": "HK$"}


@dataclass(frozen=True)
class DemoOptions:
    """What ``callboard demo`` was asked for."""

    # Seconds of live numbers before stopping (startup not counted); 0 = until interrupted.
    seconds: float = 0.0
    teams: int = 3
    agents_per_team: int = 6
    seed: int | None = None
    state_dir: Path = DEFAULT_DEMO_DIR


# Numbers and how they read


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _clock(seconds: Decimal | float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_kpi(key: str, value: Any, currency: str = "¥") -> str:
    """A KPI value as the dashboard shows it; ``—`` for a ratio without denominator."""
    number = _decimal(value)
    if number is None:
        return "—"
    unit = KPI_UNIT.get(key, Unit.count)
    if unit is Unit.money:
        return f"{currency}{number:,.2f}"
    if unit is Unit.ratio:
        return f"{number:.1%}"
    if unit is Unit.seconds:
        return _clock(number)
    if unit is Unit.count:
        return f"{int(number):,}"
    return f"{number:,.2f}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _label(key: str) -> str:
    return key.replace("_", " ")


def _with_revenue(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leaderboard rows of agents who sold something; the rest tie at zero."""
    return [row for row in rows if (_decimal(row.get("value")) or 0) > 0]


def _rank_change(change: Any) -> Text:
    if not isinstance(change, int):
        return Text("new", style="cyan")
    if change > 0:
        return Text(f"▲{change}", style="green")
    if change < 0:
        return Text(f"▼{-change}", style="red")
    return Text("=", style="dim")


# Feeding the ingest service


@dataclass(frozen=True)
class FeedStats:
    calls: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    backfilled_calls: int = 0
    problem: str | None = None


class Feeder:
    """Posts yesterday's calls once, then today's as they happen, until ``stop`` is set.

    A batch the ingest service could not take (503 while Kafka is away, a timeout) stays
    in the outbox and goes again, with the same event ids, after the wait it asked for.
    """

    def __init__(
        self,
        ingest_url: str,
        simulator: FloorSimulator,
        *,
        zone: tzinfo,
        seed: int,
        stop: threading.Event,
    ) -> None:
        self.simulator = simulator
        self.zone = zone
        self.stop = stop
        self.failure: BaseException | None = None
        self._url = ingest_url
        self._pace = random.Random(seed)
        self._outbox: list[dict[str, Any]] = []
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._stats = FeedStats()
        self._thread = threading.Thread(target=self._run, name="demo-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def stats(self) -> FeedStats:
        with self._lock:
            return self._stats

    def _count(self, **increments: int) -> None:
        with self._lock:
            stats = self._stats
            self._stats = replace(
                stats, **{name: getattr(stats, name) + n for name, n in increments.items()}
            )

    def _note(self, problem: str | None) -> None:
        with self._lock:
            self._stats = replace(self._stats, problem=problem)

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self._url, timeout=15.0) as client:
                self._backfill_yesterday(client)
                self._feed_live(client)
        except Exception as exc:
            self.failure = exc

    def _backfill_yesterday(self, client: httpx.Client) -> None:
        today = datetime.now(self.zone).date()
        opening = datetime.combine(today - timedelta(days=1), clock_time(9), tzinfo=self.zone)
        working_day = timedelta(hours=9).total_seconds()
        calls = 0
        for agent_index in range(len(self.simulator.agents)):
            for _ in range(BACKFILL_CALLS_PER_AGENT):
                at = opening + timedelta(seconds=self._pace.uniform(0, working_day))
                self._outbox.extend(self.simulator.call(at.astimezone(UTC), agent_index))
                calls += 1
        self._count(backfilled_calls=calls)
        while self._outbox and not self.stop.is_set():
            self._flush(client)
            if self._outbox:
                self.stop.wait(max(0.1, self._retry_at - time.monotonic()))

    def _next_gap(self) -> float:
        return max(0.5, self._pace.expovariate(1 / CALL_EVERY_SECONDS))

    def _state(self, agent_index: int, at: datetime, state: str, reason: str | None = None) -> None:
        """An agent's state change, as a dialer reports it (the wallboard's agent grid)."""
        agent_id, team_id = self.simulator.agents[agent_index]
        event = {
            "event_id": self.simulator._id("state"),
            "type": "agent.state_changed",
            "occurred_at": at.isoformat(),
            "agent_id": agent_id,
            "team_id": team_id,
            "state": state,
            **({"reason": reason} if reason else {}),
        }
        self._outbox.append(event)

    def _feed_live(self, client: httpx.Client) -> None:
        started = time.monotonic()
        agents = range(len(self.simulator.agents))
        next_call = [started + self._pace.uniform(0, CALL_EVERY_SECONDS) for _ in agents]
        # When an agent in wrap-up or on a pause is available again (monotonic time).
        back_at: dict[int, float] = {}
        logged_in = datetime.now(UTC)
        for agent_index in agents:
            self._state(agent_index, logged_in, "available")
        while not self.stop.is_set():
            now = time.monotonic()
            wall = datetime.now(UTC)
            calls = 0
            for agent_index, back in list(back_at.items()):
                if back <= now:
                    # Back from wrap-up or a pause: mostly straight into the next call
                    # (reported when it ends), sometimes waiting for one.
                    busy = self._pace.random() < 0.6
                    self._state(agent_index, wall, "on_call" if busy else "available")
                    del back_at[agent_index]
            for agent_index, due in enumerate(next_call):
                if due <= now:
                    # A dialer reports a call once it has ended: the call is placed so
                    # that its last event happened just now.
                    events = self.simulator.call(wall, agent_index, not_after=wall)
                    began = min(datetime.fromisoformat(e["occurred_at"]) for e in events)
                    self._state(agent_index, max(began, logged_in), "on_call")
                    self._outbox.extend(events)
                    gap = self._next_gap()
                    if self._pace.random() < PAUSE_CHANCE:
                        reason = self._pace.choice(PAUSE_REASONS)
                        self._state(agent_index, wall, "paused", reason)
                        gap += self._pace.uniform(10, 45)
                    else:
                        self._state(agent_index, wall, "wrap_up")
                    back_at[agent_index] = now + (gap - 0.5 if gap > 10 else gap * 0.4)
                    next_call[agent_index] = now + gap
                    calls += 1
            if calls:
                self._count(calls=calls)
            if self._outbox and now >= self._retry_at:
                self._flush(client)
            self.stop.wait(FEED_TICK_SECONDS)

    def _flush(self, client: httpx.Client) -> None:
        while self._outbox:
            batch = self._outbox[:MAX_EVENTS_PER_REQUEST]
            try:
                response = client.post("/v1/events", json=batch)
            except httpx.TransportError as exc:
                self._postpone(1.0, f"ingest not answering ({type(exc).__name__}); retrying")
                return
            if response.status_code == 503:
                wait = _retry_after(response.headers.get("Retry-After"))
                self._postpone(wait, f"ingest answered 503 (Kafka away?); retrying in {wait:g} s")
                return
            del self._outbox[: len(batch)]
            if response.status_code != 202:
                # Not worth repeating: the same events would be refused again.
                self._count(sent=len(batch), rejected=len(batch))
                self._note(f"ingest answered {response.status_code}: {response.text[:200]}")
                continue
            body = response.json()
            self._count(
                sent=len(batch),
                accepted=int(body.get("accepted", 0)),
                rejected=len(body.get("rejected", [])),
            )
            self._note(None)

    def _postpone(self, seconds: float, problem: str) -> None:
        self._retry_at = time.monotonic() + seconds
        self._count(retries=1)
        self._note(problem)


def _retry_after(header: str | None) -> float:
    try:
        seconds = float(header) if header else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.5), 5.0)


# Reading the API


@dataclass(frozen=True)
class Snapshot:
    """One read of the API: floor totals, teams, leaderboard and the pipeline's lag."""

    taken_at: float
    taken_wall: datetime
    totals: dict[str, Any]
    teams: list[dict[str, Any]]
    leaderboard: list[dict[str, Any]]
    lag: dict[str, Any] | None
    # The floor totals about a minute earlier (or at the first read), for the deltas.
    earlier_totals: dict[str, Any]
    earlier_at: float


class Poller:
    """Reads the API every ``interval`` seconds in a thread; keeps the latest answer."""

    def __init__(
        self,
        api_url: str,
        stop: threading.Event,
        *,
        zone: tzinfo,
        interval: float = REFRESH_SECONDS,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.stop = stop
        self.headers = headers or {}
        self.zone = zone
        self.interval = interval
        self.latest: Snapshot | None = None
        self.problem: str | None = None
        self.first_numbers_at: float | None = None
        self._url = api_url
        self._history: deque[tuple[float, dict[str, Any]]] = deque()
        self._thread = threading.Thread(target=self._run, name="demo-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=5.0, headers=self.headers) as client:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    self.latest = self._read(client)
                    self.problem = None
                except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
                    self.problem = f"API: {type(exc).__name__}: {exc}"[:200]
                self.stop.wait(max(0.05, self.interval - (time.monotonic() - began)))

    def _get(self, client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
        response = client.get(path, params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def _read(self, client: httpx.Client) -> Snapshot:
        totals = self._get(client, "/v1/metrics", period="today", metrics=",".join(TOTAL_METRICS))
        teams = self._get(
            client,
            "/v1/metrics",
            period="today",
            group_by="team",
            metrics=",".join(TEAM_METRICS),
        )
        board = self._get(
            client, "/v1/leaderboard", period="today", metric="revenue", limit=LEADERBOARD_SIZE
        )
        try:
            lag: dict[str, Any] | None = self._get(client, "/v1/ops/lag")
        except httpx.HTTPStatusError:
            lag = None
        now = time.monotonic()
        row: dict[str, Any] = totals["rows"][0] if totals["rows"] else {}
        self._history.append((now, row))
        while len(self._history) > 1 and self._history[1][0] <= now - DELTA_WINDOW_SECONDS:
            self._history.popleft()
        if self.first_numbers_at is None and (_decimal(row.get("dials")) or 0) > 0:
            self.first_numbers_at = now
        earlier_at, earlier = self._history[0]
        return Snapshot(
            taken_at=now,
            taken_wall=datetime.now(self.zone),
            totals=row,
            teams=list(teams["rows"]),
            leaderboard=list(board["rows"]),
            lag=lag,
            earlier_totals=earlier,
            earlier_at=earlier_at,
        )


# The dashboard


@dataclass(frozen=True)
class DemoView:
    """Everything one frame of the dashboard shows."""

    options: DemoOptions
    seed: int
    uptime: float
    remaining: float | None
    feed: FeedStats
    snapshot: Snapshot | None
    problem: str | None
    now: float
    urls: dict[str, str]
    currency: str
    timezone: str


def _header(view: DemoView) -> Text:
    options = view.options
    until = (
        f"stops in {_clock(view.remaining)}"
        if view.remaining is not None
        else "Ctrl-C stops it and everything it started"
    )
    feed = view.feed
    urls = view.urls
    text = Text.assemble(
        ("Callboard demo", "bold"),
        f" · up {_clock(view.uptime)} · {until} · ",
        f"{_plural(options.teams, 'team')} × {_plural(options.agents_per_team, 'agent')} · ",
        f"seed {view.seed}\n",
        ("events", "bold"),
        f"  {feed.sent:,} sent · ",
        (f"{feed.accepted:,} accepted", "green"),
        f" · {feed.rejected:,} rejected · {feed.retries:,} retries · ",
        f"{feed.calls:,} calls today (+{feed.backfilled_calls:,} yesterday)\n",
        ("stack", "bold"),
        f"   ingest {urls['ingest']} · api {urls['api']}/docs · kafka {urls['kafka']}\n",
        ("data", "bold"),
        f"    {urls['database']} · today in {view.timezone}\n",
    )
    if urls.get("board"):
        text.append_text(Text.assemble(("board", "bold"), f"   {urls['board']}\n"))
    text.append_text(_freshness(view))
    for problem in (feed.problem, view.problem):
        if problem:
            text.append(f"\n{problem}", style="red")
    return text


def _freshness(view: DemoView) -> Text:
    snapshot = view.snapshot
    if snapshot is None:
        return Text("waiting for the first numbers…", style="yellow")
    age = view.now - snapshot.taken_at
    style = "green" if age < 3 else "yellow" if age < 10 else "red"
    text = Text("numbers ")
    text.append(f"as of {snapshot.taken_wall:%H:%M:%S %Z} ({age:.1f} s ago)", style=style)
    lag = snapshot.lag
    if lag is not None:
        partitions = lag.get("partitions", [])
        behind = sum(int(p.get("lag") or 0) for p in partitions)
        seconds = max((float(p.get("lag_seconds") or 0) for p in partitions), default=0.0)
        status = str(lag.get("status", "?"))
        colour = "green" if status == "ok" else "yellow" if status == "warning" else "red"
        text.append(" · pipeline lag ")
        text.append(f"{behind:,} events, {seconds:.1f} s ({status})", style=colour)
    return text


def _table(title: str) -> Table:
    # Rules under the headings only: a frame would cost lines a terminal may not have.
    return Table(title=title, title_style="bold", box=box.SIMPLE_HEAD, show_edge=False)


def _totals_table(view: DemoView) -> Table:
    table = _table("今日全场 floor today")
    table.add_column("指标")
    table.add_column("KPI", style="dim")
    table.add_column("value", justify="right", style="bold")
    snapshot = view.snapshot
    # Over the last minute, or since the first numbers while the demo is younger.
    window = snapshot.taken_at - snapshot.earlier_at if snapshot else 0.0
    table.add_column(
        "Δ 1 min" if window >= DELTA_WINDOW_SECONDS - 1 else f"Δ {window:.0f} s",
        justify="right",
        style="green",
    )
    totals = snapshot.totals if snapshot else {}
    earlier = snapshot.earlier_totals if snapshot else {}
    for key in TOTAL_METRICS:
        delta = ""
        if key in ADDITIVE_KPIS and snapshot is not None:
            now_value = _decimal(totals.get(key)) or Decimal(0)
            before = _decimal(earlier.get(key)) or Decimal(0)
            if now_value > before:
                delta = "+" + format_kpi(key, now_value - before, view.currency)
        table.add_row(
            KPI_NAME_ZH[key], _label(key), format_kpi(key, totals.get(key), view.currency), delta
        )
    return table


def _teams_table(view: DemoView) -> Table:
    table = _table("团队 teams")
    table.add_column("团队 team")
    for key in TEAM_METRICS:
        table.add_column(f"{KPI_NAME_ZH[key]}\n{_label(key)}", justify="right")
    rows = view.snapshot.teams if view.snapshot else []
    for row in sorted(rows, key=lambda r: str(r.get("team_id"))):
        table.add_row(
            str(row.get("team_id") or "-"),
            *(format_kpi(key, row.get(key), view.currency) for key in TEAM_METRICS),
        )
    return table


def _leaderboard_table(view: DemoView) -> Table:
    table = _table(f"销售额排行榜 leaderboard: top {LEADERBOARD_SIZE} by revenue")
    table.add_column("#", justify="right")
    table.add_column("vs yday", justify="center")
    table.add_column("agent")
    table.add_column("team", style="dim")
    table.add_column("销售额 revenue", justify="right", style="bold")
    rows = _with_revenue(view.snapshot.leaderboard) if view.snapshot else []
    for row in rows:
        table.add_row(
            str(row.get("rank")),
            _rank_change(row.get("rank_change")),
            str(row.get("agent_id")),
            str(row.get("team_id") or "-"),
            format_kpi("revenue", row.get("value"), view.currency),
        )
    if not rows:
        table.add_row("", "", Text("no sales yet", style="dim"), "", "")
    return table


def render_dashboard(view: DemoView, console: Console) -> RenderableType:
    """The whole frame: header, floor totals, leaderboard and teams.

    Side by side when the terminal is wide enough for both columns, else one under the
    other (a short terminal then shows the top of it).
    """
    totals, teams, board = _totals_table(view), _teams_table(view), _leaderboard_table(view)
    left = console.measure(totals).maximum
    right = max(console.measure(board).maximum, console.measure(teams).maximum)
    if left + 2 + right > console.width:
        return Group(_header(view), totals, board, teams)
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    grid.add_column()
    grid.add_row(totals, Group(board, teams))
    return Group(_header(view), grid)


def summary_line(view: DemoView) -> str:
    """One plain line for logs: the clock, the feed, the main totals and the leader."""
    totals = view.snapshot.totals if view.snapshot else {}
    parts = [f"events {view.feed.sent:,} sent, {view.feed.accepted:,} accepted"]
    parts += [
        f"{_label(key)} {format_kpi(key, totals.get(key), view.currency)}"
        for key in ("dials", "connects", "connect_rate", "sales", "revenue")
    ]
    board = _with_revenue(view.snapshot.leaderboard) if view.snapshot else []
    if board:
        leader = board[0]
        value = format_kpi("revenue", leader.get("value"), view.currency)
        parts.append(f"leader {leader.get('agent_id')} {value}")
    if view.snapshot is not None:
        parts.append(f"numbers {view.now - view.snapshot.taken_at:.1f} s old")
    for problem in (view.feed.problem, view.problem):
        if problem:
            parts.append(f"problem: {problem}")
    return f"[demo {_clock(view.uptime)}] " + " · ".join(parts)


# Signals


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Handle SIGINT, SIGTERM and SIGHUP with ``handler`` (from the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# The demo itself


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class DemoTimings:
    started: float = field(default_factory=time.monotonic)
    stack_ready: float | None = None
    live_started: float | None = None
    live_ended: float | None = None


class Demo:
    """One run of the demo: start, feed and show, stop."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.seed = options.seed if options.seed is not None else random.randrange(1, 100_000)
        self.state_dir = options.state_dir.absolute()
        self.database_path = self.state_dir / "callboard.db"
        try:
            settings = CommonSettings()
        except ValidationError as exc:
            raise DevstackError(f"a CALLBOARD_ setting is invalid:\n{exc}") from None
        self.zone = settings.zone
        self.timezone = settings.timezone
        self.currency = CURRENCY_SYMBOLS.get(settings.currency, f"{settings.currency} ")
        kafka_port, ingest_port, api_port = _distinct_free_ports(3)
        self.stack = LocalStack(
            state_dir=self.state_dir,
            ports=StackPorts(kafka=kafka_port, ingest=ingest_port, api=api_port),
            database_url=f"sqlite:///{self.database_path}",
            settings={
                "CALLBOARD_EVENTS_TOPIC": EVENTS_TOPIC,
                "CALLBOARD_EVENTS_PARTITIONS": str(EVENTS_PARTITIONS),
                # A running `callboard up` aggregator holds the default metrics port.
                "CALLBOARD_AGGREGATOR_METRICS_PORT": "0",
            },
        )
        self.timings = DemoTimings()
        self.stop = threading.Event()
        self.feeder: Feeder | None = None
        self.poller: Poller | None = None
        self.deadline: float | None = None
        self.pid_file = self.state_dir / "demo.pid"
        self._claimed = False
        self._stopping = False
        self._plain = not console.is_terminal or console.is_dumb_terminal
        self._last_summary = 0.0
        self.board_key: str | None = None

    @property
    def urls(self) -> dict[str, str]:
        return {
            "ingest": self.stack.service_url("ingest") or "-",
            "api": self.stack.service_url("api") or "-",
            "kafka": self.stack.kafka.bootstrap_servers,
            "database": f"sqlite {_shown(self.database_path)}",
            **({"board": self.board_url()} if self.board_key else {}),
        }

    def board_url(self, lang: str | None = None) -> str:
        """The wallboard with its key in the fragment (which the browser never sends)."""
        query = f"?lang={lang}" if lang else ""
        return f"{self.stack.service_url('api')}/board{query}#key={self.board_key}"

    def report(self, message: str, style: str = "") -> None:
        """One progress line, with the seconds since the demo began."""
        elapsed = time.monotonic() - self.timings.started
        line = Text(f"{elapsed:5.1f} s  ", style="dim")
        line.append(message, style=style)
        # After SIGHUP the terminal is gone and writing fails; stopping must go on.
        with contextlib.suppress(OSError):
            self.console.print(line, soft_wrap=True)

    def run(self) -> None:
        """Run until the time is up or an interrupt; stop everything; raise on failure."""
        interrupted = False
        with _signals(self._on_stop_signal):
            try:
                try:
                    self._prepare()
                    self._start_stack()
                    self._show_live()
                except KeyboardInterrupt:
                    interrupted = True
            finally:
                self._stopping = True
                stopped = self._stop_everything(interrupted)
        if not stopped:
            raise DevstackError(
                f"the demo could not stop everything it started; `callboard status --state-dir "
                f"{_shown(self.state_dir)}` shows what runs, `callboard down` with the same "
                "--state-dir stops it"
            )

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        # The first Ctrl-C, SIGTERM or SIGHUP ends the demo; more while it stops what it
        # started would only leave processes behind.
        if not self._stopping:
            self._stopping = True
            raise KeyboardInterrupt

    def _prepare(self) -> None:
        """Claim the state dir, stop what a demo killed outright left, start afresh."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        other = live_pid(self.pid_file, "demo")
        if other is not None and other != os.getpid():
            raise DevstackError(
                f"another demo (pid {other}) runs in {_shown(self.state_dir)}; "
                "stop it first, or give this one its own --state-dir"
            )
        write_pid(self.pid_file, os.getpid())
        self._claimed = True
        leftover = [row.name for row in self.stack.status() if row.running]
        if leftover:
            self.report(f"stopping what an earlier demo left running: {', '.join(leftover)}")
            self.stack.down(self.report)
        shutil.rmtree(self.stack.kafka.workdir, ignore_errors=True)
        shutil.rmtree(self.stack.logs_dir, ignore_errors=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.database_path}{suffix}").unlink(missing_ok=True)

    def _start_stack(self) -> None:
        self.report(
            f"starting the demo stack in {_shown(self.state_dir)} "
            f"(Kafka, SQLite, ingest, aggregator, api)"
        )
        cancelled = threading.Event()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-start") as pool:
            # Steps run in a worker thread, which signals never interrupt: a process is
            # always recorded in its pid file before an interrupt can stop the demo.
            startup = pool.submit(self._start_steps, cancelled)
            try:
                with self.console.status("starting…"):
                    while not startup.done():
                        time.sleep(0.1)
            except KeyboardInterrupt:
                cancelled.set()
                self.report("interrupted: finishing the current step, then stopping")
                startup.exception()
                raise
            startup.result()
        self.timings.stack_ready = time.monotonic()
        self.report(f"stack ready in {self.timings.stack_ready - self.timings.started:.1f} s")
        if not os.environ.get("CALLBOARD_ADMIN_KEY"):
            self.report(
                f"admin key in {_shown(self.stack.admin_key_file)}: "
                f'curl -H "Authorization: Bearer $(cat {_shown(self.stack.admin_key_file)})" '
                f"{self.urls['api']}/v1/admin/keys"
            )
        self.board_key = self._create_board_key()
        self.report(
            f"wallboard: {self.board_url()} (in English: {self.board_url('en')})", style="bold"
        )

    def _create_board_key(self) -> str:
        """A read key for the wallboard (and the terminal's own reads): the key a floor's
        TVs would be given."""
        admin = os.environ.get("CALLBOARD_ADMIN_KEY") or self.stack.admin_key_file.read_text()
        response = httpx.post(
            f"{self.urls['api']}/v1/admin/keys",
            json={"name": "demo wallboard", "scopes": ["read"]},
            headers={"Authorization": f"Bearer {admin.strip()}"},
            timeout=10.0,
        )
        if response.status_code != 201:
            raise DevstackError(f"could not create the wallboard's key: {response.text[:300]}")
        key: str = response.json()["key"]
        return key

    def _start_steps(self, cancelled: threading.Event) -> None:
        def step(action: Callable[[], None]) -> None:
            if cancelled.is_set():
                raise DevstackError("interrupted")
            action()

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="demo-infra") as pool:
            kafka = pool.submit(self.stack.infra_up, self.report)
            migrations = pool.submit(self.stack.migrate, self.report)
            errors = [f.exception() for f in (kafka, migrations)]
        failures = [str(error) for error in errors if error is not None]
        if failures:
            raise DevstackError("\n\n".join(failures))
        bootstrap = self.stack.kafka.bootstrap_servers
        step(lambda: create_topic(bootstrap, EVENTS_TOPIC, EVENTS_PARTITIONS))
        step(lambda: self.stack.services_up(self.report))

    def _show_live(self) -> None:
        shape = FloorShape(
            teams=self.options.teams,
            agents_per_team=self.options.agents_per_team,
            quote_rate=DEMO_QUOTE_RATE,
            close_rate=DEMO_CLOSE_RATE,
        )
        simulator = FloorSimulator(shape=shape, seed=self.seed)
        self.feeder = Feeder(
            self.urls["ingest"], simulator, zone=self.zone, seed=self.seed, stop=self.stop
        )
        self.poller = Poller(
            self.urls["api"],
            self.stop,
            zone=self.zone,
            headers={"Authorization": f"Bearer {self.board_key}"} if self.board_key else None,
        )
        self.feeder.start()
        self.poller.start()
        self.timings.live_started = time.monotonic()
        if self.options.seconds:
            self.deadline = self.timings.live_started + self.options.seconds
        try:
            if self._plain:
                self.report(
                    f"feeding {len(simulator.agents)} agents; ingest {self.urls['ingest']}, "
                    f"api {self.urls['api']}, kafka {self.urls['kafka']}, {self.urls['database']}"
                )
                self._wait(self._print_summary)
            else:
                with Live(
                    get_renderable=lambda: render_dashboard(self.view(), self.console),
                    console=self.console,
                    refresh_per_second=4,
                    transient=False,
                ):
                    self._wait(None)
        finally:
            self.timings.live_ended = time.monotonic()
            if self._plain and self.poller.latest is not None:
                self.console.print(render_dashboard(self.view(), self.console))

    def view(self) -> DemoView:
        """The dashboard's frame as of now."""
        now = time.monotonic()
        feed = self.feeder.stats if self.feeder is not None else FeedStats()
        poller = self.poller
        return DemoView(
            options=self.options,
            seed=self.seed,
            uptime=now - (self.timings.live_started or now),
            remaining=None if self.deadline is None else max(0.0, self.deadline - now),
            feed=feed,
            snapshot=poller.latest if poller is not None else None,
            problem=poller.problem if poller is not None else None,
            now=now,
            urls=self.urls,
            currency=self.currency,
            timezone=self.timezone,
        )

    def _wait(self, tick: Callable[[], None] | None) -> None:
        """Until the deadline (or forever), checking on the stack every few seconds."""
        next_check = time.monotonic() + HEALTH_CHECK_SECONDS
        while self.deadline is None or time.monotonic() < self.deadline:
            time.sleep(0.2)
            if tick is not None:
                tick()
            if time.monotonic() >= next_check:
                self._check_health()
                next_check = time.monotonic() + HEALTH_CHECK_SECONDS

    def _print_summary(self) -> None:
        now = time.monotonic()
        if self.poller is None or self.poller.latest is None:
            return
        if now - self._last_summary >= PLAIN_SUMMARY_SECONDS:
            self._last_summary = now
            self.console.print(summary_line(self.view()), markup=False, soft_wrap=True)

    def _check_health(self) -> None:
        if self.feeder is not None and self.feeder.failure is not None:
            raise DevstackError(f"the feeder failed: {self.feeder.failure!r}")
        for name in SERVICE_NAMES:
            if self.stack.service_pid(name) is None:
                log = self.stack.logs_dir / f"{name}.log"
                raise DevstackError(
                    f"{name} stopped unexpectedly; last lines of {_shown(log)}:\n{tail(log)}"
                )
        if not self.stack.kafka.is_running():
            log = self.stack.kafka.log_path
            raise DevstackError(
                f"Kafka stopped unexpectedly; last lines of {_shown(log)}:\n{tail(log)}"
            )

    def _stop_everything(self, interrupted: bool) -> bool:
        """Stop the threads, the services and Kafka; False if something still runs."""
        if not self._claimed:
            return True
        began = time.monotonic()
        self.stop.set()
        for worker in (self.feeder, self.poller):
            if worker is not None:
                worker.join(timeout=20.0)
        if interrupted:
            self.report("interrupted")
        self.report("stopping everything the demo started")
        for action in (self.stack.services_down, self.stack.infra_down):
            try:
                action(self.report)
            except Exception as exc:
                self.report(f"{exc}", style="red")
        still = [f"{row.name} (pid {row.pid})" for row in self.stack.status() if row.running]
        if still:
            self.report("still running: " + ", ".join(still), style="red")
            return False
        self.pid_file.unlink(missing_ok=True)
        self._report_timings(time.monotonic() - began)
        return True

    def _report_timings(self, stopping: float) -> None:
        timings = self.timings
        parts = []
        if timings.stack_ready is not None:
            parts.append(f"stack ready after {timings.stack_ready - timings.started:.1f} s")
        first_numbers = self.poller.first_numbers_at if self.poller is not None else None
        if first_numbers is not None:
            parts.append(f"first numbers after {first_numbers - timings.started:.1f} s")
        if timings.live_started is not None and timings.live_ended is not None:
            parts.append(f"live for {timings.live_ended - timings.live_started:.1f} s")
        if self.feeder is not None:
            parts.append(f"{self.feeder.stats.accepted:,} events accepted")
        parts.append(f"stopped in {stopping:.1f} s")
        self.report("demo over: " + ", ".join(parts))
        self.report(f"logs and the database stay in {_shown(self.state_dir)}")


def run_demo(options: DemoOptions, console: Console | None = None) -> None:
    """Run ``callboard demo``; raises :class:`DevstackError` when something fails."""
    Demo(options, console or Console(highlight=False)).run()
