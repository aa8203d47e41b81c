"""The whole local stack in the background: Kafka, PostgreSQL and the three services.

Everything lives under a state directory (``.callboard/`` in the current directory):
the broker's and the cluster's workdirs, the services' pid files and logs, and the ports
chosen by the last ``up``, so that ``down`` and ``status`` from a later shell act on the
same processes. Each step can be repeated: what already runs is left alone.

A stack given an explicit ``database_url`` (the demo's SQLite file) has no PostgreSQL:
the services use that database and no cluster is started or stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from services.devstack.cluster import KafkaCluster
from services.devstack.kafka import KafkaBroker, kafka_jars_cached
from services.devstack.postgres import PostgresCluster
from services.devstack.processes import (
    DevstackError,
    live_pid,
    spawn,
    tail,
    terminate,
    write_pid,
)
from services.operator_env import RecordedStack
from shared.auth import bootstrap_admin_key

DEFAULT_STATE_DIR = Path(".callboard")
SERVICE_NAMES = ("ingest", "aggregator", "api")
# The aggregator has no HTTP port; surviving this long after start is its health check.
AGGREGATOR_GRACE_SECONDS = 5.0

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class StackPorts:
    """The TCP ports of one local stack; remembered in the state dir by ``up``."""

    kafka: int = 9092
    postgres: int = 5432
    ingest: int = 8001
    api: int = 8000
    # 1, or 3 for a KRaft cluster listening on ports kafka, kafka + 1 and kafka + 2.
    kafka_brokers: int = 1


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    log: Path
    detail: str = ""


@dataclass
class LocalStack:
    """Starts, stops and reports on the local stack kept in state_dir."""

    state_dir: Path = DEFAULT_STATE_DIR
    ports: StackPorts = field(default_factory=StackPorts)
    python: str = sys.executable
    # A database of the caller's (e.g. a SQLite file) instead of the local PostgreSQL.
    database_url: str | None = None
    # More CALLBOARD_* settings for the services, e.g. the events topic.
    settings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.absolute()
        self.kafka: KafkaBroker | KafkaCluster
        if self.ports.kafka_brokers == 3:
            first = self.ports.kafka
            self.kafka = KafkaCluster(
                self.state_dir / "kafka-cluster", ports=[first, first + 1, first + 2]
            )
        elif self.ports.kafka_brokers == 1:
            self.kafka = KafkaBroker(self.state_dir / "kafka", port=self.ports.kafka)
        else:
            raise DevstackError(f"Kafka runs as 1 or 3 brokers, not {self.ports.kafka_brokers}")
        self.postgres = PostgresCluster(self.state_dir / "postgres", port=self.ports.postgres)

    @classmethod
    def load(
        cls,
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        kafka_port: int | None = None,
        postgres_port: int | None = None,
        ingest_port: int | None = None,
        api_port: int | None = None,
        kafka_brokers: int | None = None,
    ) -> LocalStack:
        """A stack with explicit ports, else those the last ``up`` saved, else defaults."""
        saved = StackPorts()
        ports_file = state_dir / "ports.json"
        if ports_file.exists():
            try:
                saved = StackPorts(**json.loads(ports_file.read_text()))
            except (TypeError, ValueError) as exc:
                raise DevstackError(f"{ports_file} is unreadable ({exc}); delete it") from exc
        ports = StackPorts(
            kafka=kafka_port or saved.kafka,
            postgres=postgres_port or saved.postgres,
            ingest=ingest_port or saved.ingest,
            api=api_port or saved.api,
            kafka_brokers=kafka_brokers or saved.kafka_brokers,
        )
        return cls(state_dir=state_dir, ports=ports)

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def uses_postgres(self) -> bool:
        return self.database_url is None

    def env(self) -> dict[str, str]:
        """The settings that point the services at this stack's Kafka and database."""
        return {
            "CALLBOARD_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "CALLBOARD_DATABASE_URL": self.database_url or self.postgres.url,
            **self.settings,
        }

    # Infrastructure

    def infra_up(self, report: Report = _quiet) -> None:
        """Start PostgreSQL and Kafka side by side (the JVM is the slow one)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._ignore_in_git()
        (self.state_dir / "ports.json").write_text(json.dumps(asdict(self.ports)) + "\n")
        # For the operator commands (`callboard keys`, `import`, ...) typed without settings.
        env = self.env()
        RecordedStack(
            database_url=env["CALLBOARD_DATABASE_URL"],
            kafka_bootstrap_servers=env["CALLBOARD_KAFKA_BOOTSTRAP_SERVERS"],
            ingest_url=f"http://127.0.0.1:{self.ports.ingest}",
            api_url=f"http://127.0.0.1:{self.ports.api}",
        ).write(self.state_dir)
        if not self.uses_postgres:
            self._start_kafka(report)
            return
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="infra-up") as pool:
            postgres = pool.submit(self._start_postgres, report)
            kafka = pool.submit(self._start_kafka, report)
            errors = [f.exception() for f in (postgres, kafka)]
        failures = [str(error) for error in errors if error is not None]
        if failures:
            raise DevstackError("\n\n".join(failures))

    def infra_down(self, report: Report = _quiet) -> None:
        if self.kafka.is_running():
            report("stopping Kafka")
            self.kafka.stop()
        if self.uses_postgres and self.postgres.is_running():
            report("stopping PostgreSQL")
            self.postgres.stop()

    def _start_postgres(self, report: Report) -> None:
        if not self.postgres.is_running():
            report("starting PostgreSQL")
        self.postgres.start()
        report(f"PostgreSQL ready on 127.0.0.1:{self.ports.postgres}")

    def _start_kafka(self, report: Report) -> None:
        if not self.kafka.is_running():
            if kafka_jars_cached(self.kafka.version):
                report("starting Kafka")
            else:
                report("starting Kafka (downloading it with Maven first, once per machine)")
        self.kafka.start()
        report(f"Kafka ready on {self.kafka.bootstrap_servers}")

    def _ignore_in_git(self) -> None:
        # The state dir may be created outside this repository, where no .gitignore
        # covers it; a self-ignoring directory keeps it out of any repository.
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")

    # Services

    def migrate(self, report: Report = _quiet) -> None:
        report("running migrations")
        log_path = self.logs_dir / "migrate.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            result = subprocess.run(
                [self.python, "-m", "services.cli", "migrate"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._service_env(),
                check=False,
            )
        if result.returncode != 0:
            raise DevstackError(
                f"`callboard migrate` failed with status {result.returncode}; "
                f"last lines of {log_path}:\n{tail(log_path)}"
            )

    def service_command(self, name: str) -> list[str]:
        base = [self.python, "-m", "services.cli", name]
        if name == "ingest":
            return [*base, "--port", str(self.ports.ingest)]
        if name == "api":
            return [*base, "--port", str(self.ports.api)]
        return base

    def service_url(self, name: str) -> str | None:
        port = {"ingest": self.ports.ingest, "api": self.ports.api}.get(name)
        return None if port is None else f"http://127.0.0.1:{port}"

    def service_pid(self, name: str) -> int | None:
        return live_pid(self._pid_file(name), f"services.cli {name}")

    def services_up(self, report: Report = _quiet, timeout: float = 60.0) -> None:
        """Start the services that are not running, then wait until each is healthy."""
        started: dict[str, subprocess.Popen[bytes]] = {}
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICE_NAMES:
            if self.service_pid(name) is not None:
                report(f"{name} already running")
                continue
            report(f"starting {name}")
            with self._log_path(name).open("a") as log:
                # Logs accumulate across runs; this line marks where the current one begins.
                log.write(f"\n--- callboard up: starting {name} at {time.ctime()} ---\n")
            process = spawn(
                self.service_command(name), self._log_path(name), env=self._service_env()
            )
            write_pid(self._pid_file(name), process.pid)
            started[name] = process
        now = time.monotonic()
        deadline = now + timeout
        # HTTP services first: the aggregator's grace period runs meanwhile.
        settle = now + AGGREGATOR_GRACE_SECONDS
        for name in sorted(SERVICE_NAMES, key=lambda n: self.service_url(n) is None):
            self._wait_service(name, started.get(name), deadline, settle, report)

    def services_down(self, report: Report = _quiet) -> None:
        for name in reversed(SERVICE_NAMES):
            pid = self.service_pid(name)
            if pid is not None:
                report(f"stopping {name}")
                terminate(pid, timeout=20.0)
            self._pid_file(name).unlink(missing_ok=True)

    def _wait_service(
        self,
        name: str,
        process: subprocess.Popen[bytes] | None,
        deadline: float,
        settle: float,
        report: Report,
    ) -> None:
        log_path = self._log_path(name)
        url = self.service_url(name)
        if url is None:
            # Only a process that was just started needs the grace period.
            while process is not None and time.monotonic() < settle and self._alive(name, process):
                time.sleep(0.2)
            if not self._alive(name, process):
                self._pid_file(name).unlink(missing_ok=True)
                raise DevstackError(
                    f"{name} exited right after start; last lines of {log_path}:\n{tail(log_path)}"
                )
            report(f"{name} running")
            return
        last_problem = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self._alive(name, process):
                    self._pid_file(name).unlink(missing_ok=True)
                    raise DevstackError(
                        f"{name} exited during start; last lines of {log_path}:\n{tail(log_path)}"
                    )
                try:
                    response = client.get(f"{url}/readyz")
                    if response.status_code == 200:
                        report(f"{name} ready on {url}")
                        return
                    last_problem = f"/readyz answered {response.status_code}"
                except httpx.HTTPError as exc:
                    last_problem = f"{type(exc).__name__}"
                if time.monotonic() > deadline:
                    raise DevstackError(
                        f"{name} was not ready on {url}/readyz in time ({last_problem}); "
                        f"it is still running, see {log_path}:\n{tail(log_path)}"
                    )
                time.sleep(0.3)

    def _alive(self, name: str, process: subprocess.Popen[bytes] | None) -> bool:
        if process is not None:
            return process.poll() is None
        return self.service_pid(name) is not None

    @property
    def admin_key_file(self) -> Path:
        return self.state_dir / "admin_key"

    def _service_env(self) -> Mapping[str, str]:
        env = {**os.environ, **self.env(), "PYTHONUNBUFFERED": "1"}
        # A bootstrap admin key for the admin API, unless the environment names one.
        if not env.get("CALLBOARD_ADMIN_KEY"):
            env["CALLBOARD_ADMIN_KEY"] = bootstrap_admin_key(self.admin_key_file)
        return env

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def _log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    # Everything

    def up(self, report: Report = _quiet, timeout: float = 60.0) -> None:
        self.infra_up(report)
        self.migrate(report)
        self.services_up(report, timeout=timeout)

    def down(self, report: Report = _quiet) -> None:
        self.services_down(report)
        self.infra_down(report)

    def status(self, *, services: bool = True) -> list[ComponentStatus]:
        rows: list[ComponentStatus] = []
        if services:
            rows.extend(self._service_status(name) for name in SERVICE_NAMES)
        brokers = self.kafka.nodes if isinstance(self.kafka, KafkaCluster) else [self.kafka]
        for node_id, broker in enumerate(brokers, start=1):
            kafka_pid = broker.pid
            rows.append(
                ComponentStatus(
                    name=f"kafka-{node_id}" if len(brokers) > 1 else "kafka",
                    running=kafka_pid is not None,
                    pid=kafka_pid,
                    address=broker.bootstrap_servers,
                    log=broker.log_path,
                )
            )
        if not self.uses_postgres:
            return rows
        postgres_pid = self.postgres.pid
        rows.append(
            ComponentStatus(
                name="postgres",
                running=postgres_pid is not None,
                pid=postgres_pid,
                address=f"127.0.0.1:{self.ports.postgres}",
                log=self.postgres.log_path,
            )
        )
        return rows

    def _service_status(self, name: str) -> ComponentStatus:
        pid = self.service_pid(name)
        url = self.service_url(name)
        detail = ""
        if pid is not None and url is not None:
            try:
                response = httpx.get(f"{url}/readyz", timeout=1.0)
                detail = "ready" if response.status_code == 200 else f"{response.status_code}"
            except httpx.HTTPError:
                detail = "not answering"
        return ComponentStatus(
            name=name,
            running=pid is not None,
            pid=pid,
            address=url or "-",
            log=self._log_path(name),
            detail=detail,
        )
