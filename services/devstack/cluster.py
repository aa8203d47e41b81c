"""A three-node Apache Kafka cluster (KRaft, each node broker and controller) on loopback.

One broker with replication factor 1 cannot show that an acknowledged event survives the
loss of the broker leading its partition; three can. The cluster is what production floors
run, scaled down: topics are replicated to all three nodes by default and need two in sync
to accept a write, so it carries on with one node down and refuses writes with two down.
The nodes reuse KafkaBroker (jars, configuration, start and wait), one workdir each, and
the cluster adds what fault scenarios need: killing, freezing and restarting one node, and
asking which node leads a partition.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from services.devstack.kafka import (
    DEFAULT_KAFKA_VERSION,
    KafkaBroker,
    _admin,
    _random_cluster_id,
    _read_properties,
)
from services.devstack.processes import DevstackError, free_port, is_alive

NODE_IDS = (1, 2, 3)
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


class ClusterNode(KafkaBroker):
    """One broker+controller of a KafkaCluster; the voters are the cluster's three nodes."""

    def __init__(
        self,
        node_id: int,
        workdir: Path,
        port: int,
        controller_port: int,
        voters: str,
        cluster_id: str,
        num_partitions: int,
        *,
        version: str,
        heap: str,
        cache_dir: Path | None,
    ) -> None:
        super().__init__(
            workdir,
            port=port,
            controller_port=controller_port,
            num_partitions=num_partitions,
            version=version,
            heap=heap,
            cache_dir=cache_dir,
        )
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id

    def send_signal(self, sig: signal.Signals) -> None:
        pid = self.pid
        if pid is None:
            raise DevstackError(f"Kafka node {self.node_id} is not running")
        # The JVM leads its own process group (see processes.spawn).
        os.killpg(pid, sig)

    def kill(self) -> None:
        """SIGKILL the node, as a crash or a pulled plug would end it; its data stays."""
        pid = self.pid
        self.send_signal(signal.SIGKILL)
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout=30)
        else:
            deadline = time.monotonic() + 30
            while pid is not None and is_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._process = None
        self.pid_file.unlink(missing_ok=True)

    def _properties(self) -> dict[str, str]:
        properties = super()._properties()
        # A static quorum: every node knows all three voters from its configuration.
        del properties["controller.quorum.bootstrap.servers"]
        replicated = str(REPLICATION_FACTOR)
        min_isr = str(MIN_INSYNC_REPLICAS)
        properties.update(
            {
                "node.id": str(self.node_id),
                "controller.quorum.voters": self.voters,
                "default.replication.factor": replicated,
                "min.insync.replicas": min_isr,
                "offsets.topic.replication.factor": replicated,
                "transaction.state.log.replication.factor": replicated,
                "transaction.state.log.min.isr": min_isr,
                "share.coordinator.state.topic.replication.factor": replicated,
                "share.coordinator.state.topic.min.isr": min_isr,
                # An acknowledged write must never be lost to a lagging replica's election.
                "unclean.leader.election.enable": "false",
            }
        )
        return properties

    def _format_options(self) -> list[str]:
        # With controller.quorum.voters set, format takes neither --standalone nor
        # --initial-controllers; all nodes share one cluster id.
        return ["--cluster-id", self.cluster_id]


def _partitions(topic: dict[str, Any]) -> list[dict[str, Any]]:
    partitions: list[dict[str, Any]] = topic.get("partitions") or []
    return partitions


class KafkaCluster:
    """Three KRaft nodes on 127.0.0.1, each with its data in ``workdir/node-<id>``.

    Ports are chosen free on first use and read back from the nodes' configuration
    afterwards, so a cluster stopped and started again on the same workdir keeps its
    addresses and its data.
    """

    def __init__(
        self,
        workdir: Path,
        ports: Sequence[int] | None = None,
        num_partitions: int = 3,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        heap: str = "512m",
        cache_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.version = version
        if ports is not None and len(ports) != len(NODE_IDS):
            raise DevstackError(f"a Kafka cluster needs {len(NODE_IDS)} ports, got {len(ports)}")
        previous = {
            node_id: _read_properties(self._node_dir(node_id) / "server.properties")
            for node_id in NODE_IDS
        }
        broker_ports = (
            list(ports)
            if ports is not None
            else [
                _listener_port(previous[node_id], "PLAINTEXT") or free_port()
                for node_id in NODE_IDS
            ]
        )
        controller_ports = [
            _listener_port(previous[node_id], "CONTROLLER") or free_port() for node_id in NODE_IDS
        ]
        voters = ",".join(
            f"{node_id}@127.0.0.1:{port}"
            for node_id, port in zip(NODE_IDS, controller_ports, strict=True)
        )
        cluster_id = self._existing_cluster_id() or _random_cluster_id()
        self._nodes = {
            node_id: ClusterNode(
                node_id,
                self._node_dir(node_id),
                port=port,
                controller_port=controller_port,
                voters=voters,
                cluster_id=cluster_id,
                num_partitions=num_partitions,
                version=version,
                heap=heap,
                cache_dir=cache_dir,
            )
            for node_id, port, controller_port in zip(
                NODE_IDS, broker_ports, controller_ports, strict=True
            )
        }
        self._frozen: set[int] = set()

    @property
    def nodes(self) -> list[ClusterNode]:
        return list(self._nodes.values())

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def log_path(self) -> Path:
        """The log of a node that is down (the one to read when something failed), else 1's."""
        down = [node for node in self.nodes if not node.is_running()]
        return (down or self.nodes)[0].log_path

    def node(self, node_id: int) -> ClusterNode:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise DevstackError(f"the cluster has no node {node_id}") from None

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def start(self, timeout: float = 120.0) -> None:
        """Start (or resume) every node that is down and wait until all three are brokers."""
        deadline = time.monotonic() + timeout
        for node_id in list(self._frozen):
            self.resume(node_id)
        waiting = [node for node in self.nodes if not node.is_running()]
        for node in waiting:
            node.launch()
        try:
            for node in self.nodes:
                node._wait_ready(deadline)
            self._wait_for(self._all_registered, deadline, "all three nodes to register")
        except DevstackError:
            self.stop(timeout=10.0)
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node at once (a frozen one is resumed first so it can shut down)."""
        for node_id in list(self._frozen):
            self.resume(node_id)
        # One at a time, the last nodes would wait for a controller quorum that the
        # first ones took away; together they all shut down within the timeout.
        with ThreadPoolExecutor(max_workers=len(self._nodes)) as pool:
            for future in [pool.submit(node.stop, timeout) for node in self.nodes]:
                future.result()

    def kill(self, node_id: int) -> None:
        """SIGKILL one node; restart(node_id) brings it back with its data."""
        self.node(node_id).kill()
        self._frozen.discard(node_id)

    def freeze(self, node_id: int) -> None:
        """SIGSTOP one node: it holds its connections but answers nothing until resumed."""
        self.node(node_id).send_signal(signal.SIGSTOP)
        self._frozen.add(node_id)

    def resume(self, node_id: int) -> None:
        self.node(node_id).send_signal(signal.SIGCONT)
        self._frozen.discard(node_id)

    def restart(self, node_id: int, timeout: float = 120.0) -> None:
        """Stop the node if it runs (cleanly), start it again and wait until it answers."""
        if node_id in self._frozen:
            self.resume(node_id)
        node = self.node(node_id)
        node.stop()
        node.start(timeout=timeout)

    def leader_of(self, topic: str, partition: int, timeout: float = 30.0) -> int:
        """The node id leading topic's partition, waiting while it has no leader."""
        deadline = time.monotonic() + timeout
        found: list[int] = []

        def leader_known(admin: Any) -> bool:
            for described in admin.describe_topics([topic]):
                for entry in _partitions(described):
                    if entry["partition_index"] == partition and entry["leader_id"] >= 0:
                        found.append(int(entry["leader_id"]))
                        return True
            return False

        self._wait_for(leader_known, deadline, f"a leader for {topic}[{partition}]")
        return found[-1]

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Wait until all nodes are brokers and every partition has its full ISR."""
        self._wait_for(
            self._healthy, time.monotonic() + timeout, "every partition to have a full ISR"
        )

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

    def _node_dir(self, node_id: int) -> Path:
        return self.workdir / f"node-{node_id}"

    def _existing_cluster_id(self) -> str | None:
        for node_id in NODE_IDS:
            meta = _read_properties(self._node_dir(node_id) / "data" / "meta.properties")
            if "cluster.id" in meta:
                return meta["cluster.id"]
        return None

    def _reachable_bootstrap(self) -> str:
        # Only nodes that run and are not frozen: a frozen node accepts connections and
        # then answers nothing, and a refused connection leaks a socket in kafka-python.
        return ",".join(
            node.bootstrap_servers
            for node in self.nodes
            if node.node_id not in self._frozen and node.is_running()
        )

    def _all_registered(self, admin: Any) -> bool:
        brokers = admin.describe_cluster().get("brokers") or []
        return len(brokers) == len(NODE_IDS)

    def _healthy(self, admin: Any) -> bool:
        if not self._all_registered(admin):
            return False
        for described in admin.describe_topics():
            for entry in _partitions(described):
                replicas = set(entry["replica_nodes"])
                if entry["leader_id"] < 0 or set(entry["isr_nodes"]) != replicas:
                    return False
        return True

    def _wait_for(self, check: Callable[[Any], bool], deadline: float, what: str) -> None:
        problem = "no node is reachable"
        while True:
            bootstrap = self._reachable_bootstrap()
            if bootstrap:
                try:
                    admin = _admin(bootstrap, 5000)
                except Exception as error:
                    problem = repr(error)
                else:
                    try:
                        if check(admin):
                            return
                        problem = "not yet"
                    except Exception as error:
                        problem = repr(error)
                    finally:
                        admin.close()
            if time.monotonic() >= deadline:
                raise DevstackError(
                    f"Kafka cluster in {self.workdir}: timed out waiting for {what} ({problem})"
                )
            time.sleep(0.5)


def _listener_port(properties: dict[str, str], name: str) -> int | None:
    for listener in properties.get("listeners", "").split(","):
        if listener.startswith(f"{name}://"):
            return int(listener.rsplit(":", 1)[1])
    return None
