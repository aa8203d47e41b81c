"""A single-node Apache Kafka broker (KRaft, broker and controller in one JVM) for local use.

Developers and the test suite need a real broker without Docker. The broker's jars come
from Maven Central through ``mvn`` (see pom.xml beside this file) into a per-version cache
under ``~/.cache/callboard``, so only the first start on a machine resolves anything. A
workdir holds the configuration, the data and ``kafka.log``; starting again on the same
workdir keeps the data, which is what lets fault tests stop and restart the broker.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from services.devstack.processes import (
    DevstackError,
    free_port,
    live_pid,
    port_in_use,
    spawn,
    tail,
    terminate,
    write_pid,
)

DEFAULT_KAFKA_VERSION = "4.1.1"
POM_PATH = Path(__file__).with_name("pom.xml")

log = logging.getLogger(__name__)

_LOG4J2_PROPERTIES = """\
# Everything to stdout, which KafkaBroker sends to kafka.log.
status = warn
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
# Per-partition state changes and request logs drown the interesting lines.
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def cache_root() -> Path:
    """Where resolved Kafka distributions are kept, one directory per version."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callboard"


def _tool(name: str, package_hint: str) -> str:
    if name == "java" and (java_home := os.environ.get("JAVA_HOME")):
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise DevstackError(
            f"`{name}` is not installed; run `make deps` (or `apt-get install {package_hint}`)"
        )
    return found


def kafka_jars_cached(version: str = DEFAULT_KAFKA_VERSION, cache_dir: Path | None = None) -> bool:
    """True when the broker's jars are in the cache, so starting needs no download."""
    return ((cache_dir or cache_root()) / f"kafka-{version}" / ".complete").exists()


def ensure_kafka_jars(version: str = DEFAULT_KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Return the directory holding the broker's jars, resolving them with mvn if needed.

    The jars are copied into a temporary directory and renamed into place only when mvn
    has finished, so an interrupted download is never mistaken for a complete one, and two
    processes resolving at once both end up with a usable cache.
    """
    target = (cache_dir or cache_root()) / f"kafka-{version}"
    libs = target / "libs"
    if kafka_jars_cached(version, cache_dir):
        return libs
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".kafka-{version}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        _tool("mvn", "maven"),
        "-q",
        "-B",
        "-f",
        str(POM_PATH),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging / 'libs'}",
        f"-Dkafka.version={version}",
    ]
    log.info("resolving Apache Kafka %s with Maven into %s", version, target)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any((staging / "libs").glob(f"kafka_2.13-{version}.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise DevstackError(f"could not resolve Apache Kafka {version} with Maven:\n{output}")
    (staging / ".complete").write_text(version + "\n")
    try:
        staging.rename(target)
    except OSError:
        # Another process finished first (or a broken directory is in the way).
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return libs


def _random_cluster_id() -> str:
    # Kafka's Uuid is 16 random bytes in URL-safe base64 without padding; its own
    # generator rejects ids starting with "-" because the CLI would read them as a flag.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _read_properties(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _admin(bootstrap: str, timeout_ms: int) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="callboard-devstack",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        reconnect_backoff_max_ms=1000,
    )


def _accepts_connections(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def broker_ready(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when the cluster at bootstrap answers metadata requests with a live broker."""
    # kafka-python 3.0 leaks a socket for every refused connection attempt (and its
    # wakeup socketpair when the client constructor gives up), which pytest turns into
    # ResourceWarning errors; so it is only let near a port that already listens.
    if not _accepts_connections(bootstrap):
        return False
    try:
        admin = _admin(bootstrap, int(timeout * 1000))
    except Exception:
        return False
    try:
        admin.list_topics()
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:
        return False
    finally:
        admin.close()


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 3,
    replication_factor: int = -1,
    timeout: float = 30.0,
) -> None:
    """Create a topic (if missing) and wait until every partition has a leader.

    The replication factor -1 is the brokers' default: one broker, or all of a cluster.
    """
    from kafka.errors import TopicAlreadyExistsError

    timeout_ms = int(timeout * 1000)
    admin = _admin(bootstrap, timeout_ms)
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                {name: {"num_partitions": partitions, "replication_factor": replication_factor}},
                timeout_ms=timeout_ms,
            )
        # CreateTopics returns once the controller accepted the topic; producing right
        # away can still hit "unknown topic" until the broker's metadata has leaders.
        admin.wait_for_topics([name], timeout_ms=timeout_ms)
    finally:
        admin.close()


class KafkaBroker:
    """One Kafka broker+controller process bound to 127.0.0.1, with its data in workdir."""

    def __init__(
        self,
        workdir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        num_partitions: int = 3,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        heap: str = "512m",
        cache_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.port = port
        self.controller_port = controller_port
        self.num_partitions = num_partitions
        self.version = version
        self.heap = heap
        self.cache_dir = cache_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "kafka.pid"

    @property
    def pid(self) -> int | None:
        """The broker's pid if it runs, whichever process started it."""
        # The config path is on the java command line and unique to this workdir.
        return live_pid(self.pid_file, str(self.config_path))

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker (formatting storage on first use) and wait until it answers."""
        if self.is_running():
            running_on = _read_properties(self.config_path).get("advertised.listeners", "")
            if not running_on.endswith(f":{self.port}"):
                raise DevstackError(
                    f"the broker in {self.workdir} already runs ({running_on}); stop it first "
                    f"to move it to port {self.port}"
                )
            self._wait_ready(time.monotonic() + timeout)
            return
        self.launch()
        try:
            self._wait_ready(time.monotonic() + timeout)
        except DevstackError:
            self.stop(timeout=10.0)
            raise

    def launch(self) -> None:
        """Spawn the broker (formatting storage on first use) without waiting for it.

        Nodes of a cluster cannot answer until a quorum of them runs, so they are all
        launched before any is waited for.
        """
        libs = ensure_kafka_jars(self.version, self.cache_dir)
        java = _tool("java", "default-jre-headless")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage(java, libs)
        for port in (self.port, self.controller_port):
            if port is not None and port_in_use(port):
                raise DevstackError(
                    f"cannot start Kafka: 127.0.0.1:{port} is already in use "
                    "(another broker? choose another port)"
                )
        command = [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            str(libs / "*"),
            "kafka.Kafka",
            str(self.config_path),
        ]
        self._process = spawn(command, self.log_path, cwd=self.workdir)
        write_pid(self.pid_file, self._process.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker: SIGTERM for a clean shutdown, SIGKILL after timeout seconds."""
        pid = self.pid
        if pid is not None:
            child = self._process if self._process and self._process.pid == pid else None
            terminate(pid, timeout=timeout, child=child)
        self._process = None
        self.pid_file.unlink(missing_ok=True)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout=timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> None:
        body = "".join(f"{key}={value}\n" for key, value in self._properties().items())
        self.config_path.write_text("# Written by services/devstack/kafka.py.\n" + body)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)

    def _properties(self) -> dict[str, str]:
        previous = _read_properties(self.config_path)
        if self.controller_port is None:
            # The controller's address is written into the metadata log when storage is
            # formatted, so a restarted broker must keep the port it was formatted with.
            listeners = previous.get("listeners", "")
            for listener in listeners.split(","):
                if listener.startswith("CONTROLLER://"):
                    self.controller_port = int(listener.rsplit(":", 1)[1])
            if self.controller_port is None:
                self.controller_port = free_port()
        return {
            "node.id": "1",
            "process.roles": "broker,controller",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.num_partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
        }

    def _format_storage(self, java: str, libs: Path) -> None:
        command = [
            java,
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            str(libs / "*"),
            "kafka.tools.StorageTool",
            "format",
            *self._format_options(),
            "--config",
            str(self.config_path),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, cwd=self.workdir, check=False
        )
        with self.log_path.open("a") as handle:
            handle.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise DevstackError(
                f"formatting Kafka storage in {self.data_dir} failed:\n"
                f"{(result.stdout + result.stderr).strip()[-4000:]}"
            )

    def _format_options(self) -> list[str]:
        return ["--standalone", "--cluster-id", _random_cluster_id()]

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise DevstackError(
                    f"Kafka exited with status {self._process.returncode} during start; "
                    f"last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Once the port listens, one patient probe beats many short ones: the
            # broker accepts connections a little before it serves requests.
            if broker_ready(self.bootstrap_servers, timeout=max(remaining, 1.0)):
                return
            time.sleep(0.2)
        raise DevstackError(
            f"Kafka did not answer on {self.bootstrap_servers} in time; "
            f"last lines of {self.log_path}:\n{tail(self.log_path)}"
        )
