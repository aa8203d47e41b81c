"""The demo's dashboard: reading the API about once a second, and the frame it draws."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from devstack.demo.feed import FeedStats
from devstack.demo.options import DemoOptions
from shared.kpis import COUNTERS, FLOOR_COUNTERS, LEAD_COUNTS, RATIOS, Unit

REFRESH_SECONDS = 1.0
DELTA_WINDOW_SECONDS = 60.0
LEADERBOARD_SIZE = 10

TOTAL_METRICS = (
    *FLOOR_COUNTERS,
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
