"""Start Kafka (KRaft, 1 or 3 nodes) and Redis in containers through testcontainers.

Containers join a Docker network this run creates, so brokers reach each other by
alias (``kafka-1:19092``); the host reaches them through ports published on
127.0.0.1 and advertised as such (the host port is chosen before the container
starts). Image names are settings: our offline-built images or the official ones
take the same ``KAFKA_*`` environment.
"""

from __future__ import annotations

import base64
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from confluent_kafka.admin import AdminClient
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from stream.devcluster.progress import say, step
from stream.devcluster.secure import CERTS_PORT, REDIS_SECURE_COMMAND, SecureStack, copy_secrets
from stream.exceptions import InfrastructureError

# The Ryuk reaper image cannot be pulled without a registry; every container here is
# removed by id instead (RunningCluster.stop, `dev down`), and carries LABEL so a
# crashed run's leftovers can be found: docker ps -a --filter label=io.streaminfer.cluster
testcontainers_config.ryuk_disabled = True
LABEL = "io.streaminfer.cluster"

INTERNAL_PORT = 19092
EXTERNAL_PORT = 9092
CONTROLLER_PORT = 9093


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the container binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def preferred_port(port: int) -> int:
    """``port`` when it is free on 127.0.0.1, else any free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own Uuid.randomUuid, never one starting with '-', which command-line
    parsers (the storage tool's among them) would read as an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def kafka_env(node_id: int, nodes: int, host_port: int, cluster_id: str,
              alias_prefix: str = "") -> dict[str, str]:
    """The environment of one combined broker+controller node. ``alias_prefix`` tells
    clusters apart on a shared network (``east-kafka-1``, ``west-kafka-1``)."""
    alias = f"{alias_prefix}kafka-{node_id}"
    rf = str(min(3, nodes))
    isr = str(min(2, nodes))
    env = {
        "CLUSTER_ID": cluster_id,
        "KAFKA_NODE_ID": str(node_id),
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"INTERNAL://:{INTERNAL_PORT},EXTERNAL://:{EXTERNAL_PORT},"
                           f"CONTROLLER://:{CONTROLLER_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"INTERNAL://{alias}:{INTERNAL_PORT},"
                                      f"EXTERNAL://127.0.0.1:{host_port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":
            "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": rf,
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "10",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": rf,
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": isr,
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "10",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": rf,
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": isr,
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        # A SIGKILLed broker keeps its partitions until the controller fences it after
        # this session timeout (Kafka's default 9 s, heartbeat 2 s): 4 s brings a
        # partition-leader kill's recovery under 10 s (docs/operations.md, chaos).
        "KAFKA_BROKER_SESSION_TIMEOUT_MS": "4000",
        "KAFKA_BROKER_HEARTBEAT_INTERVAL_MS": "1000",
        # A transaction past its timeout (its producer frozen or dead) is aborted at the
        # coordinator's next sweep, every 10 s by default; until then read_committed
        # readers wait at its first record. 2 s: they resume about 2 s after the timeout.
        "KAFKA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS": "2000",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "4",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        "KAFKA_HEAP_OPTS": "-Xmx512m -Xms128m",
    }
    # Extra JVM flags for every node: the test command sets -XX:TieredStopAtLevel=1 (C1
    # only), which starts a broker in about 2/3 of the time (a three-node cluster 15 s
    # instead of 25 s here) at a lower peak throughput the tests do not need.
    jvm = os.environ.get("STREAMINFER_KAFKA_OPTS")
    if jvm:
        env["KAFKA_OPTS"] = jvm
    if os.environ.get("STREAMINFER_KAFKA_CDS"):  # class data sharing (compose/kafka/entrypoint.sh)
        env["STREAMINFER_KAFKA_CDS"] = os.environ["STREAMINFER_KAFKA_CDS"]
    if nodes == 1:
        env["KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS"] = f"{alias}:{CONTROLLER_PORT}"
    else:
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"] = ",".join(
            f"{i}@{alias_prefix}kafka-{i}:{CONTROLLER_PORT}" for i in range(1, nodes + 1))
    return env


@dataclass
class RunningCluster:
    """What a started cluster is and how to reach it."""

    bootstrap_servers: str
    redis_url: str
    brokers: int
    network: Network
    kafka: dict[int, DockerContainer] = field(default_factory=dict)
    redis: DockerContainer | None = None
    kafka_ports: dict[int, int] = field(default_factory=dict)
    alias_prefix: str = ""
    secure: SecureStack | None = None
    certs_ports: dict[int, int] = field(default_factory=dict)  # secure: the CERTS listener

    @property
    def certs_bootstrap(self) -> str | None:
        """Where host clients that authenticate with a certificate connect (secure only)."""
        if self.secure is None:
            return None
        return ",".join(f"127.0.0.1:{p}" for p in self.certs_ports.values())

    def client_conf(self) -> dict[str, Any]:
        """librdkafka properties of an admin client on the host."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.secure is not None:
            conf.update(self.secure.kafka_client())
        return conf

    @property
    def internal_bootstrap(self) -> str:
        """How containers on the cluster's network reach the brokers."""
        return ",".join(f"{self.alias_prefix}kafka-{i}:{INTERNAL_PORT}" for i in self.kafka_ports)

    def container_ids(self) -> list[str]:
        """Ids of every container of the cluster."""
        ids = [c.get_wrapped_container().id for c in self.kafka.values()]
        if self.redis is not None:
            ids.append(self.redis.get_wrapped_container().id)
        return ids

    def stop(self) -> None:
        """Remove the containers and the network."""
        for container in [*self.kafka.values(), self.redis]:
            if container is not None:
                try:
                    container.stop()
                except Exception as exc:  # noqa: BLE001 - best-effort cleanup of containers we started; logged
                    say(f"could not remove a container: {exc}")
        try:
            self.network.remove()
        except Exception as exc:  # noqa: BLE001 - best-effort cleanup of containers we started; logged
            say(f"could not remove network {self.network.name}: {exc}")


def _publish(container: DockerContainer, port: int, host_port: int) -> None:
    # docker-py takes (ip, port) to publish on one address; testcontainers' helper
    # only takes a port (and would publish on every interface).
    container.ports[f"{port}/tcp"] = ("127.0.0.1", host_port)  # type: ignore[assignment]


def start_kafka_node(cluster: RunningCluster, node_id: int, image: str, cluster_id: str,
                     name_prefix: str | None) -> DockerContainer:
    """Create and start one Kafka node (also used to restart a stopped node in tests)."""
    host_port = cluster.kafka_ports[node_id]
    container = DockerContainer(image)
    env = kafka_env(node_id, cluster.brokers, host_port, cluster_id, cluster.alias_prefix)
    if cluster.secure is not None:
        certs_port = cluster.certs_ports[node_id]
        env = cluster.secure.kafka_env(env, f"127.0.0.1:{certs_port}")
        _publish(container, CERTS_PORT, certs_port)
    for key, value in env.items():
        container.with_env(key, value)
    _publish(container, EXTERNAL_PORT, host_port)
    container.with_network(cluster.network).with_network_aliases(
        f"{cluster.alias_prefix}kafka-{node_id}")
    # The host name is the alias: a node advertises its controller listener by host name,
    # and the certificate of a secure node names the alias, not the container id.
    container.with_kwargs(labels={LABEL: cluster.network.name},
                          hostname=f"{cluster.alias_prefix}kafka-{node_id}")
    if name_prefix:
        container.with_name(f"{name_prefix}-kafka-{node_id}")
    container.start()
    cluster.kafka[node_id] = container
    if cluster.secure is not None:
        copy_secrets(container.get_wrapped_container(), cluster.secure.kafka_files())
    return container


def wait_for_kafka(bootstrap: str, brokers: int, deadline_s: float,
                   containers: list[DockerContainer],
                   client_conf: dict[str, Any] | None = None) -> None:
    """Block until the metadata lists ``brokers`` brokers (or raise with the logs' tail);
    ``client_conf`` adds the admin's security properties."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000,
                         "log_level": 2, **(client_conf or {})})
    end = time.monotonic() + deadline_s
    seen = 0
    while time.monotonic() < end:
        for c in containers:
            c.get_wrapped_container().reload()
            if c.get_wrapped_container().status == "exited":
                logs = c.get_wrapped_container().logs(tail=30).decode(errors="replace")
                raise InfrastructureError(f"a Kafka container exited during start-up:\n{logs}")
        try:
            seen = len(admin.list_topics(timeout=2).brokers)
            if seen >= brokers:
                return
        except Exception:  # noqa: BLE001, S110 - best-effort cleanup of containers we started; logged
            pass
        time.sleep(0.5)
    logs = containers[0].get_wrapped_container().logs(tail=30).decode(errors="replace")
    raise InfrastructureError(
        f"Kafka at {bootstrap} showed {seen}/{brokers} brokers after {deadline_s:.0f}s; "
        f"last log lines of the first node:\n{logs}"
    )


def wait_for_redis(url: str, deadline_s: float, **security: Any) -> None:
    """Block until Redis answers PING (``security``: redis-py's user, password, TLS)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, **security)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if client.ping():
                return
        except redis.RedisError:
            pass
        time.sleep(0.2)
    raise InfrastructureError(f"Redis at {url} did not answer PING within {deadline_s:.0f}s")


REDIS_COMMAND = "redis-server --protected-mode no --bind 0.0.0.0 --save '' --appendonly no"


def start_redis(image: str, host_port: int | None = None, network: Network | None = None,
                name: str | None = None, label: str = "standalone",
                wait: bool = True, secure: SecureStack | None = None,
                alias: str = "redis") -> tuple[DockerContainer, str]:
    """One standalone Redis published on 127.0.0.1; returns the container and its URL
    (with ``secure``: TLS only, ACL users, the default user off; a rediss:// URL)."""
    port = host_port or free_port()
    container = DockerContainer(image).with_command(
        REDIS_SECURE_COMMAND if secure is not None else REDIS_COMMAND)
    _publish(container, 6379, port)
    if network is not None:
        container.with_network(network).with_network_aliases(alias)
    container.with_kwargs(labels={LABEL: label})
    if name:
        container.with_name(name)
    container.start()
    url = f"{'rediss' if secure else 'redis'}://127.0.0.1:{port}/0"
    if secure is not None:
        try:
            copy_secrets(container.get_wrapped_container(), secure.redis_files())
        except BaseException:
            container.stop()
            raise
    if wait:
        try:
            wait_for_redis(url, 30, **(secure.redis_client() if secure else {}))
        except BaseException:
            container.stop()
            raise
    return container, url


def start_cluster(brokers: int, kafka_image: str, redis_image: str,
                  name_prefix: str | None = None, deadline_s: float = 180.0,
                  preferred_ports: bool = False, with_redis: bool = True,
                  alias_prefix: str = "", secure: SecureStack | None = None) -> RunningCluster:
    """Start ``brokers`` Kafka nodes and one Redis; return once all answer.

    With ``preferred_ports`` the host ports are 9092.. and 6379 where free (dev use); with
    ``secure`` the cluster is the secure one (:mod:`stream.devcluster.secure`).
    """
    if brokers not in (1, 3):
        raise InfrastructureError(f"brokers must be 1 or 3, got {brokers}")
    network = Network().create()
    pick = preferred_port if preferred_ports else (lambda _p: free_port())
    ports = {i: pick(9091 + i) for i in range(1, brokers + 1)}
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports.values())
    redis_port = pick(6379)
    scheme = "rediss" if secure is not None else "redis"
    cluster = RunningCluster(bootstrap, f"{scheme}://127.0.0.1:{redis_port}/0", brokers, network,
                             kafka_ports=ports, alias_prefix=alias_prefix, secure=secure)
    if secure is not None:
        cluster.certs_ports = {i: pick(9191 + i) for i in ports}
    cluster_id = new_cluster_id()
    try:
        how = " (TLS, SCRAM, ACLs)" if secure is not None else ""
        with step(f"starting {brokers} Kafka node(s) ({kafka_image})"
                  + (f" and Redis ({redis_image})" if with_redis else "") + how):
            for node_id in ports:
                start_kafka_node(cluster, node_id, kafka_image, cluster_id, name_prefix)
            if with_redis:
                cluster.redis, _url = start_redis(
                    redis_image, redis_port, network,
                    f"{name_prefix}-redis" if name_prefix else None, network.name, wait=False,
                    secure=secure, alias=f"{alias_prefix}redis")
            wait_for_kafka(bootstrap, brokers, deadline_s, list(cluster.kafka.values()),
                           cluster.client_conf())
            if with_redis:
                wait_for_redis(cluster.redis_url, 30,
                               **(secure.redis_client() if secure else {}))
    except BaseException:
        cluster.stop()
        raise
    return cluster
