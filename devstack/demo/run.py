"""One run of ``callboard demo``: start the stack, feed and show it, stop everything."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.text import Text

from devstack.demo.dashboard import (
    CURRENCY_SYMBOLS,
    DemoView,
    Poller,
    render_dashboard,
    summary_line,
)
from devstack.demo.feed import DEMO_CLOSE_RATE, DEMO_QUOTE_RATE, Feeder, FeedStats
from devstack.demo.options import DemoOptions
from devstack.kafka import create_topic
from devstack.processes import DevstackError, free_port, live_pid, tail, write_pid
from devstack.simulator import FloorShape, FloorSimulator
from devstack.stack import SERVICE_NAMES, LocalStack, StackPorts
from shared.settings import CommonSettings

EVENTS_TOPIC = "callboard.events"
EVENTS_PARTITIONS = 3
PLAIN_SUMMARY_SECONDS = 5.0
HEALTH_CHECK_SECONDS = 2.0


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
