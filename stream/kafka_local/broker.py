"""A real Apache Kafka 3.9.2 broker (KRaft, combined broker+controller) on 127.0.0.1, run by the project.

No Docker engine and no Debian Kafka package exist on our machines, so the jars come from Maven
Central (``pom.xml`` beside this file, ``maven-dependency-plugin:copy-dependencies``) into a cache
outside the repository, and the broker runs as a plain ``java`` process.  Storage is formatted once
(``kafka.tools.StorageTool format``) and kept, so data survives a restart.  Readiness is a metadata
request answered by the broker, not an open port.

Several nodes can form one cluster (``LocalCluster(size=3)``): each node is broker and controller, the
voters are static.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fusionrec.errors import BrokerError

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.2"
POM = Path(__file__).with_name("pom.xml")


def cache_root() -> Path:
    return Path(os.environ.get("FUSIONREC_CACHE", "~/.cache/fusionrec")).expanduser()


def jars_dir() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}" / "libs"


def fetch_jars() -> Path:
    """Download the broker jars with Maven once; later calls find them in the cache."""
    libs = jars_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka jars from Maven Central; install maven")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
    ]  # fmt: skip
    log.info("fetching Kafka %s jars: %s", KAFKA_VERSION, " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"fetching Kafka jars failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    marker.touch()
    return libs


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes in URL-safe base64, as Kafka's own ``Uuid.randomUuid``.

    Like Kafka, never one that starts with ``-``: the storage tool would read it as an option (one
    random id in 64 did, and the broker failed to format its storage).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Node:
    """One combined broker+controller process of a local cluster."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.out"

    @property
    def props_file(self) -> Path:
        return self.data_dir / "server.properties"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None


def server_properties(node: Node, voters: str, cluster_size: int) -> str:
    rf = min(3, cluster_size)
    min_isr = 2 if cluster_size >= 3 else 1
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={node.data_dir / 'logs'}",
            "num.partitions=4",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=8",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.retention.hours=168",
            "log.segment.bytes=67108864",
            # the log cleaner looks for compactable logs every second rather than every 15: a local broker's
            # compacted topics are small, and tests observe compaction without long waits
            "log.cleaner.backoff.ms=1000",
            "num.network.threads=2",
            "num.io.threads=4",
            "",
        ]
    )


LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


class LocalCluster:
    """Start, stop and probe a cluster of ``size`` local KRaft nodes kept under ``data_dir``.

    The layout (ports, node ids, cluster id) is written to ``data_dir/cluster.env`` on first start and
    reused afterwards, so a restarted cluster finds its data and its clients' bootstrap address again.
    """

    def __init__(self, data_dir: Path | str | None = None, *, size: int = 1, port: int | None = None) -> None:
        self.data_dir = Path(data_dir or cache_root() / "kafka-data").expanduser().resolve()
        self.size = size
        self._port = port
        self.nodes = self._layout()

    def _layout(self) -> list[Node]:
        layout = self.data_dir / "cluster.env"
        if layout.exists():
            fields = dict(line.split("=", 1) for line in layout.read_text().split())
            ports = [int(p) for p in fields["ports"].split(",")]
            cports = [int(p) for p in fields["controller_ports"].split(",")]
            self.cluster_id = fields["cluster_id"]
        else:
            if self._port is not None:
                ports = [self._port + i for i in range(self.size)]
            elif self.size == 1:
                ports = [9092]  # the documented default address of the local broker
            else:
                ports = [free_port() for _ in range(self.size)]
            cports = [free_port() for _ in range(self.size)]
            self.cluster_id = new_cluster_id()
        return [
            Node(i + 1, ports[i], cports[i], self.data_dir / f"node{i + 1}") for i in range(len(ports))
        ]

    def _save_layout(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "cluster.env").write_text(
            f"cluster_id={self.cluster_id}\n"
            f"ports={','.join(str(n.port) for n in self.nodes)}\n"
            f"controller_ports={','.join(str(n.controller_port) for n in self.nodes)}\n"
        )

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        heap = os.environ.get("FUSIONREC_KAFKA_HEAP", "-Xmx512m -Xms128m").split()
        return [
            "java", *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            "-cp", f"{libs}/*", main, *args,
        ]  # fmt: skip

    def _format(self, libs: Path, node: Node) -> None:
        if (node.data_dir / "logs" / "meta.properties").exists():
            return
        cmd = self._java(libs, "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(node.props_file))
        for attempt in (1, 2):  # a JVM starved of CPU or memory on a busy 2-core machine can fail once
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0 or (node.data_dir / "logs" / "meta.properties").exists():
                return
            log.warning("formatting KRaft storage of node %d failed (attempt %d): %s", node.node_id, attempt, done.stderr[-500:])
        raise BrokerError(f"formatting KRaft storage of node {node.node_id} failed:\n{done.stdout}\n{done.stderr}")

    def start(self, timeout_s: float = 90.0) -> str:
        """Start every node that is not running; return the bootstrap servers once the cluster answers."""
        libs = fetch_jars()
        self._save_layout()
        (self.data_dir / "log4j.properties").write_text(LOG4J)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            self.start_node(node, libs=libs, voters=voters)
        self.wait_ready(timeout_s)
        return self.bootstrap

    def start_node(self, node: Node, *, libs: Path | None = None, voters: str | None = None) -> None:
        if node.pid() is not None:
            return
        libs = libs or fetch_jars()
        voters = voters or ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node.props_file.write_text(server_properties(node, voters, len(self.nodes)))
        self._format(libs, node)
        with open(node.log_file, "ab") as out:
            proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(node.props_file)),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # the broker outlives the command that started it
            )  # fmt: skip
        node.pid_file.write_text(str(proc.pid))
        log.info("started Kafka node %d (pid %d) on %s", node.node_id, proc.pid, node.bootstrap)

    def stop_node(self, node: Node, *, kill: bool = False, timeout_s: float = 60.0) -> None:
        pid = node.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if node.pid() is None:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        node.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            self.stop_node(node)

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.pid() is not None]

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Poll with metadata requests until every running node is registered, quietly: a refused
        connection is what a starting broker gives, not an error.  One BrokerError if it never is."""
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.pid() is None and self.size == 1:
                    raise BrokerError(f"Kafka exited during start; see {node.log_file}:\n{tail(node.log_file)}")
            try:
                probe_s = max(0.5, min(5.0, deadline - time.monotonic()))
                with quiet_loggers(*AIOKAFKA_LOGGERS):
                    brokers = asyncio.run(metadata_brokers(self.bootstrap, timeout_s=probe_s))
                if len(brokers) >= len(self.running()) > 0:
                    return
                last_error = f"{len(brokers)} of {len(self.running())} brokers registered"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            time.sleep(0.5)
        logs = "\n".join(f"--- {n.log_file} (last lines):\n{tail(n.log_file, 20) or '(empty)'}" for n in self.nodes)
        raise BrokerError(
            f"Kafka at {self.bootstrap} not ready after {timeout_s:.0f}s (last probe: {last_error})\n{logs}"
        )

    def status(self) -> dict[str, object]:
        return {
            "bootstrap": self.bootstrap,
            "data_dir": str(self.data_dir),
            "nodes": [{"id": n.node_id, "port": n.port, "pid": n.pid()} for n in self.nodes],
        }

    def destroy(self) -> None:
        """Stop the cluster and delete its data (tests use throw-away clusters)."""
        for node in self.nodes:
            self.stop_node(node, kill=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


AIOKAFKA_LOGGERS = ("aiokafka", "aiokafka.conn")
"""aiokafka logs every refused connection at ERROR, a screenful while a broker starts."""


@contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Silence the named loggers (below CRITICAL) for the duration; their levels are restored after."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


async def metadata_brokers(bootstrap: str, timeout_s: float = 5.0) -> list[int]:
    """Ask the cluster for its metadata; return the ids of the brokers it reports."""
    from aiokafka import AIOKafkaClient  # lazy: importing this module must stay cheap

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
        return sorted(b.nodeId for b in metadata.brokers())
    finally:
        await client.close()
