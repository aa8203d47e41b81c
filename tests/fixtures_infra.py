"""Session-wide Kafka and PostgreSQL for the test suite, as a pytest plugin.

Load it from tests/conftest.py with ``pytest_plugins = ["tests.fixtures_infra"]``.

Each of the two comes from the first of these that applies:

1. an environment variable naming one that already runs
   (``CALLBOARD_TEST_KAFKA_BOOTSTRAP_SERVERS``, ``CALLBOARD_TEST_DATABASE_URL``);
2. a container, when a Docker engine answers;
3. a process started here from ``devstack`` on free ports, stopped at the end.

A test never skips for want of a broker or database: if none of these works, it errors
with the reason. Both start in parallel on first use, since the JVM is slow to come up.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import pytest

from devstack.cluster import KafkaCluster
from devstack.kafka import KafkaBroker, broker_ready
from devstack.postgres import PostgresCluster
from devstack.processes import free_port

KAFKA_ENV = "CALLBOARD_TEST_KAFKA_BOOTSTRAP_SERVERS"
DATABASE_ENV = "CALLBOARD_TEST_DATABASE_URL"
KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:16"
# The session's brokers hold nothing worth a clean shutdown: a node still shutting down
# after this long (one waiting for a controller quorum its peers took away) is killed.
THROWAWAY_STOP_SECONDS = 5.0

Stop = Callable[[], None]


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap_servers: str
    # Only a broker started here can be stopped and restarted by fault tests.
    broker: KafkaBroker | None
    origin: str


@dataclass(frozen=True)
class DatabaseEndpoint:
    url: str
    # Only a cluster started here can be stopped and restarted by fault tests.
    cluster: PostgresCluster | None
    origin: str


@cache
def docker_available() -> bool:
    """True when a Docker engine answers a ping within a few seconds.

    Call it from the main thread: a failed probe leaves the docker library's unix socket
    unclosed, and the warning about it is silenced here, before pytest (where warnings
    are errors) would pin it on whichever test the garbage collector happens to run in.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from testcontainers.core.docker_client import DockerClient

            DockerClient(timeout=3).client.ping()
        except Exception:
            return False
        finally:
            gc.collect()
    return True


def _kafka_container() -> tuple[str, Stop]:
    # testcontainers' KafkaContainer drives Confluent images through their start scripts;
    # the official image is configured by environment alone, so a generic container
    # with a fixed host port (which must be advertised before start) does it.
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    host = DockerClient().host()
    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,BROKER://:19092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{host}:{port},BROKER://localhost:19092",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_NUM_PARTITIONS="3",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_MIN_INSYNC_REPLICAS="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
    )
    container.start()
    bootstrap = f"{host}:{port}"
    deadline = time.monotonic() + 120
    while not broker_ready(bootstrap):
        if time.monotonic() > deadline:
            logs = container.get_wrapped_container().logs(tail=40).decode(errors="replace")
            container.stop()
            raise RuntimeError(
                f"the {KAFKA_IMAGE} container did not answer on {bootstrap}:\n{logs}"
            )
        time.sleep(0.5)
    return bootstrap, container.stop


def _postgres_container() -> tuple[str, Stop]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14 keeps it at the top level
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE,
        username="callboard",
        password="callboard",
        dbname="callboard",
        driver="psycopg",
    )
    container.start()
    return str(container.get_connection_url()), container.stop


def _with_psycopg_driver(url: str) -> str:
    # libpq-style URLs are what people copy around; SQLAlchemy would pick psycopg2 for them.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


class Infrastructure:
    """Obtains the broker and the database once per session, in parallel, and stops them."""

    def __init__(self, base: Path, *, use_docker: bool) -> None:
        self._base = base
        self._use_docker = use_docker
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-infra")
        self._lock = threading.Lock()
        self._stops: list[Stop] = []
        self._kafka: Future[KafkaEndpoint] | None = None
        self._database: Future[DatabaseEndpoint] | None = None

    def kafka(self) -> KafkaEndpoint:
        self._begin()
        assert self._kafka is not None
        return self._kafka.result()

    def database(self) -> DatabaseEndpoint:
        self._begin()
        assert self._database is not None
        return self._database.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        errors: list[str] = []
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as exc:
                errors.append(repr(exc))
        if errors:
            raise RuntimeError("stopping test infrastructure failed: " + "; ".join(errors))

    def origins(self) -> list[str]:
        """Where the broker and the database came from, for those obtained so far."""
        found: list[str] = []
        for name, future in (("Kafka", self._kafka), ("PostgreSQL", self._database)):
            if future is not None and future.done() and future.exception() is None:
                found.append(f"{name}: {future.result().origin}")
        return found

    def _begin(self) -> None:
        with self._lock:
            if self._kafka is None:
                self._kafka = self._pool.submit(self._obtain_kafka)
                self._database = self._pool.submit(self._obtain_database)

    def _on_close(self, stop: Stop) -> None:
        with self._lock:
            self._stops.append(stop)

    def _obtain_kafka(self) -> KafkaEndpoint:
        if bootstrap := os.environ.get(KAFKA_ENV):
            return KafkaEndpoint(bootstrap, None, f"${KAFKA_ENV}")
        tried = f"${KAFKA_ENV} is unset"
        if self._use_docker:
            try:
                bootstrap, stop = _kafka_container()
            except Exception as exc:
                tried += f"; the {KAFKA_IMAGE} container failed ({exc})"
            else:
                self._on_close(stop)
                return KafkaEndpoint(bootstrap, None, f"container {KAFKA_IMAGE}")
        else:
            tried += "; no Docker engine answers"
        broker = KafkaBroker(self._base / "kafka", port=free_port(), num_partitions=3)
        self._on_close(partial(broker.stop, timeout=THROWAWAY_STOP_SECONDS))
        try:
            broker.start(timeout=120)
        except Exception as exc:
            raise RuntimeError(f"no Kafka broker for the tests: {tried}; and {exc}") from exc
        return KafkaEndpoint(broker.bootstrap_servers, broker, "local broker (devstack)")

    def _obtain_database(self) -> DatabaseEndpoint:
        if url := os.environ.get(DATABASE_ENV):
            return DatabaseEndpoint(_with_psycopg_driver(url), None, f"${DATABASE_ENV}")
        tried = f"${DATABASE_ENV} is unset"
        if self._use_docker:
            try:
                url, stop = _postgres_container()
            except Exception as exc:
                tried += f"; the {POSTGRES_IMAGE} container failed ({exc})"
            else:
                self._on_close(stop)
                return DatabaseEndpoint(url, None, f"container {POSTGRES_IMAGE}")
        else:
            tried += "; no Docker engine answers"
        # Outside pytest's temporary tree: a concurrent pytest run resets that tree to 0700,
        # which would lock the unprivileged server user out of its data mid-run.
        workdir = Path(tempfile.mkdtemp(prefix="callboard-test-pg-"))
        self._on_close(lambda: shutil.rmtree(workdir, ignore_errors=True))
        cluster = PostgresCluster(workdir, port=free_port(), durable=False)
        self._on_close(cluster.stop)
        try:
            cluster.start()
        except Exception as exc:
            raise RuntimeError(f"no PostgreSQL for the tests: {tried}; and {exc}") from exc
        return DatabaseEndpoint(cluster.url, cluster, "local cluster (devstack)")


_INFRASTRUCTURE = pytest.StashKey[Infrastructure]()


@pytest.fixture(scope="session")
def callboard_infrastructure(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Infrastructure]:
    use_docker = not (os.environ.get(KAFKA_ENV) and os.environ.get(DATABASE_ENV)) and (
        docker_available()
    )
    infrastructure = Infrastructure(tmp_path_factory.mktemp("infra"), use_docker=use_docker)
    request.config.stash[_INFRASTRUCTURE] = infrastructure
    yield infrastructure
    infrastructure.close()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # Which of the three sources served the run is the first question when CI and a
    # laptop disagree.
    infrastructure = config.stash.get(_INFRASTRUCTURE, None)
    if infrastructure is not None and (origins := infrastructure.origins()):
        terminalreporter.write_line("test infrastructure: " + "; ".join(origins))


@pytest.fixture(scope="session")
def kafka_endpoint(callboard_infrastructure: Infrastructure) -> KafkaEndpoint:
    try:
        return callboard_infrastructure.kafka()
    except RuntimeError as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(kafka_endpoint: KafkaEndpoint) -> str:
    """host:port of a running Kafka broker shared by the whole session."""
    return kafka_endpoint.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_broker(kafka_endpoint: KafkaEndpoint) -> KafkaBroker | None:
    """The broker process when this session started it (so it can be stopped), else None."""
    return kafka_endpoint.broker


@pytest.fixture(scope="session")
def database_endpoint(callboard_infrastructure: Infrastructure) -> DatabaseEndpoint:
    try:
        return callboard_infrastructure.database()
    except RuntimeError as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def postgres_url(database_endpoint: DatabaseEndpoint) -> str:
    """SQLAlchemy URL (postgresql+psycopg) of a database shared by the whole session."""
    return database_endpoint.url


@pytest.fixture(scope="session")
def postgres_cluster(database_endpoint: DatabaseEndpoint) -> PostgresCluster | None:
    """The PostgreSQL server when this session started it (so it can be stopped), else None."""
    return database_endpoint.cluster


# kafka-python leaks the socket of every refused connection attempt; clients of the cluster
# see nodes killed under them, so tests that kill nodes expect those warnings.
KAFKA_REFUSED_SOCKETS = (
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
)


_CLUSTER_USED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Some sockets leaked on connections refused by killed nodes stay referenced until the
    # session ends; collected here, before pytest would report them outside any test.
    if config.stash.get(_CLUSTER_USED, False):
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="unclosed <socket.socket", category=ResourceWarning
            )
            gc.collect()


@pytest.fixture(scope="session")
def _kafka_cluster_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaCluster]:
    request.config.stash[_CLUSTER_USED] = True
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), num_partitions=3)
    try:
        cluster.start(timeout=180)
    except Exception as exc:
        pytest.fail(f"no three-node Kafka cluster for the tests: {exc}", pytrace=False)
    yield cluster
    cluster.stop(timeout=THROWAWAY_STOP_SECONDS)


@pytest.fixture
def kafka_cluster(_kafka_cluster_session: KafkaCluster) -> Iterator[KafkaCluster]:
    """A three-node KRaft cluster of this session's own, whole and in sync for each test.

    Always started here, whatever the environment names, since its tests kill, freeze and
    restart its nodes. A test that leaves a node down finds it back in the next one.
    """
    cluster = _kafka_cluster_session
    cluster.start()
    cluster.wait_healthy()
    yield cluster
    _collect_refused_sockets()


def _collect_refused_sockets() -> None:
    # The sockets kafka-python leaked on connections refused by killed brokers sit in
    # reference cycles; collected here rather than in a later test that expects none.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="unclosed <socket.socket", category=ResourceWarning
        )
        gc.collect()


@pytest.fixture
def refused_sockets_collected() -> Iterator[None]:
    """For tests that stop or kill a broker under its clients: what kafka-python leaked on
    the refused connections is collected at the end of the test, quietly."""
    yield
    _collect_refused_sockets()
