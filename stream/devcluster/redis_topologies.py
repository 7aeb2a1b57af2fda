"""Redis Sentinel and Redis Cluster for dev and tests.

These containers use the host's network stack and bind 127.0.0.1 only: Sentinel and
Cluster hand out node addresses to clients, and on the host those must be addresses
the host can reach, which a port-published bridge network cannot give consistently
(the nodes would announce their container addresses). Traffic stays on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from testcontainers.core.container import DockerContainer

from stream.devcluster.cluster import LABEL, free_port, wait_for_redis
from stream.devcluster.progress import step
from stream.devcluster.secure import (
    REDIS_TLS_FLAGS,
    SECRETS_DIR,
    WAIT_FOR_SECRETS_SH,
    SecureStack,
    copy_secrets,
)
from stream.exceptions import InfrastructureError

MASTER_NAME = "streaminfer"


def _host_container(image: str, command: str, label: str) -> DockerContainer:
    container = DockerContainer(image).with_command(command)
    container.with_kwargs(network_mode="host", labels={LABEL: label})
    return container


def _port_pair_free(port: int) -> bool:
    for p in (port, port + 10_000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _cluster_port() -> int:
    """A port P with P and P+10000 (the cluster bus) both free."""
    for _ in range(200):
        port = free_port()
        if port < 55_000 and _port_pair_free(port):
            return port
    raise InfrastructureError("no free port pair for a Redis Cluster node")


@dataclass
class RedisTopology:
    """Running Redis nodes and how clients reach them."""

    mode: str
    url: str  # standalone/cluster: a node URL; sentinel: the master's initial URL
    sentinels: str | None = None
    master_name: str = MASTER_NAME
    containers: dict[str, DockerContainer] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Settings for clients of this topology."""
        env = {"STREAMINFER_REDIS_URL": self.url, "STREAMINFER_REDIS_MODE": self.mode}
        if self.sentinels:
            env["STREAMINFER_REDIS_SENTINELS"] = self.sentinels
            env["STREAMINFER_REDIS_MASTER_NAME"] = self.master_name
        return env

    def stop(self) -> None:
        """Remove every node."""
        for container in self.containers.values():
            with contextlib.suppress(Exception):
                container.stop()


def start_sentinel(image: str, label: str = "sentinel",
                   secure: SecureStack | None = None) -> RedisTopology:
    """A master, a replica and three sentinels (quorum 2, down after 2 s). With
    ``secure``: every node and sentinel TLS only, ACL users from the declaration (the
    replica and the sentinels log in as admin), the default user off."""
    master, replica = free_port(), free_port()
    sentinel_ports = [free_port() for _ in range(3)]
    scheme = "rediss" if secure is not None else "redis"
    topo = RedisTopology("sentinel", f"{scheme}://127.0.0.1:{master}/0",
                         ",".join(f"127.0.0.1:{p}" for p in sentinel_ports))
    base = "redis-server --bind 127.0.0.1 --protected-mode no --save '' --appendonly no"
    login: dict[str, Any] = {}
    if secure is not None:
        login = secure.redis_client()
        password = secure.material.password("admin")
        tls = (f"--port 0 --tls-replication yes {REDIS_TLS_FLAGS} "
               f"--masteruser admin --masterauth {password}")
    try:
        with step("starting Redis Sentinel (master, replica, 3 sentinels)"
                  + (" over TLS with ACL users" if secure is not None else "")):
            def node(port: int, extra: str = "") -> DockerContainer:
                if secure is None:
                    return _host_container(image, f"{base} --port {port} {extra}", label).start()
                return _secured(image, f"{base} --tls-port {port} {tls} {extra}", label, secure)

            topo.containers["redis-master"] = node(master)
            topo.containers["redis-replica"] = node(replica, f"--replicaof 127.0.0.1 {master}")
            wait_for_redis(f"{scheme}://127.0.0.1:{master}/0", 30, **login)
            for i, port in enumerate(sentinel_ports):
                lines = ["bind 127.0.0.1",
                         f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2",
                         f"sentinel down-after-milliseconds {MASTER_NAME} 2000",
                         f"sentinel failover-timeout {MASTER_NAME} 10000"]
                if secure is None:
                    lines += [f"port {port}", "protected-mode no"]
                else:  # TLS to clients, nodes and other sentinels; logins as admin
                    lines += ["port 0", f"tls-port {port}", "tls-replication yes",
                              *secure_tls_conf(),
                              f"sentinel auth-user {MASTER_NAME} admin",
                              f"sentinel auth-pass {MASTER_NAME} {password}",
                              "sentinel sentinel-user admin", f"sentinel sentinel-pass {password}",
                              "user default off", *sentinel_users(secure)]
                quoted = " ".join(f'"{line}"' for line in lines)
                cmd = (f'printf "%s\\n" {quoted} > /tmp/s.conf && '
                       "exec redis-server /tmp/s.conf --sentinel")
                if secure is None:
                    sentinel = _host_container(image, f"sh -c '{cmd}'", label).start()
                else:
                    sentinel = _secured(image, cmd, label, secure, raw=True)
                topo.containers[f"sentinel-{i + 1}"] = sentinel
            _wait_replication(master, replica, sentinel_ports, login)
    except BaseException:
        topo.stop()
        raise
    return topo


# What a client asks a sentinel (redis-py's discovery), and nothing that changes it.
SENTINEL_READS = ("get-master-addr-by-name", "sentinels", "replicas", "slaves", "masters",
                  "master", "myid")


def sentinel_users(secure: SecureStack) -> list[str]:
    """The sentinels' ACL users: admin may do anything; every principal with Redis access
    logs in with its own password and may only ask where the master is."""
    lines = []
    for name, principal in secure.declaration.principals.items():
        if principal.redis is None and not principal.super_user:
            continue
        password = secure.material.password(name)
        if principal.super_user:
            lines.append(f"user {name} on >{password} ~* &* +@all")
        else:
            reads = " ".join(f"+sentinel|{sub}" for sub in SENTINEL_READS)
            lines.append(f"user {name} on >{password} -@all +ping +hello +auth +client|setname "
                         f"{reads}")
    return lines


def secure_tls_conf() -> list[str]:
    """The same as lines of a sentinel's configuration file."""
    d = SECRETS_DIR
    return [f"tls-cert-file {d}/redis.crt", f"tls-key-file {d}/redis.key",
            f"tls-ca-cert-file {d}/ca.pem", "tls-auth-clients optional"]


def _secured(image: str, command: str, label: str, secure: SecureStack,
             raw: bool = False) -> DockerContainer:
    """A host-network Redis node that waits for its secrets, then runs ``command``."""
    body = command if raw else f"exec {command}"
    container = _host_container(image, f"sh -c '{WAIT_FOR_SECRETS_SH}{body}'", label).start()
    copy_secrets(container.get_wrapped_container(), secure.redis_files())
    return container


def _wait_replication(master: int, replica: int, sentinels: list[int],
                      login: dict[str, Any] | None = None) -> None:
    kw = {**(login or {}), **({"ssl": True} if login else {})}
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            info = redis.Redis(port=replica, socket_timeout=1, **kw).info("replication")
            s = redis.Redis(port=sentinels[0], socket_timeout=1, **kw)
            known = s.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            if info.get("master_link_status") == "up" and known:
                return
        except redis.RedisError:
            pass
        time.sleep(0.3)
    raise InfrastructureError("Redis Sentinel did not come up within 60 s")


def start_cluster(image: str, nodes: int = 3, label: str = "cluster",
                  secure: SecureStack | None = None) -> RedisTopology:
    """A Redis Cluster of ``nodes`` masters (no replicas), slots spread evenly. With
    ``secure``: clients and the cluster bus over TLS, ACL users, the default user off."""
    ports = [_cluster_port() for _ in range(nodes)]
    scheme = "rediss" if secure is not None else "redis"
    topo = RedisTopology("cluster", f"{scheme}://127.0.0.1:{ports[0]}/0")
    login: dict[str, Any] = secure.redis_client() if secure is not None else {}
    try:
        with step(f"starting a {nodes}-node Redis Cluster"
                  + (" over TLS with ACL users" if secure is not None else "")):
            for i, port in enumerate(ports):
                base = ("redis-server --bind 127.0.0.1 --protected-mode no "
                        f"--cluster-enabled yes --cluster-config-file /tmp/nodes-{port}.conf "
                        "--save '' --appendonly no")
                if secure is None:
                    node = _host_container(image, f"{base} --port {port}", label).start()
                else:
                    node = _secured(image, f"{base} --port 0 --tls-port {port} --tls-cluster yes "
                                           f"--tls-replication yes {REDIS_TLS_FLAGS}", label,
                                    secure)
                topo.containers[f"redis-node-{i + 1}"] = node
            for port in ports:
                wait_for_redis(f"{scheme}://127.0.0.1:{port}/0", 30, **login)
            cli = ["redis-cli"]
            if secure is not None:
                cli += ["--tls", "--cacert", f"{SECRETS_DIR}/ca.pem", "--user", "admin",
                        "--pass", secure.material.password("admin"), "--no-auth-warning"]
            create = topo.containers["redis-node-1"].exec(
                [*cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                 "--cluster-replicas", "0", "--cluster-yes"])
            if create.exit_code != 0:
                raise InfrastructureError(f"redis-cli --cluster create failed: "
                                          f"{create.output.decode(errors='replace')[-500:]}")
            # Every node must see the whole cluster as ok (all 16384 slots covered, gossip
            # converged); checking one node let a client meet a node still saying "down".
            end = time.monotonic() + 30
            while time.monotonic() < end:
                kw = {**login, **({"ssl": True} if login else {})}
                infos = [redis.Redis(port=p, **kw).cluster("info") for p in ports]
                if all(i.get("cluster_state") == "ok"
                       and int(i.get("cluster_slots_ok", 0)) == 16384
                       and int(i.get("cluster_known_nodes", 0)) == len(ports) for i in infos):
                    break
                time.sleep(0.2)
            else:
                raise InfrastructureError("Redis Cluster did not reach state ok on every node "
                                          "in 30 s")
    except BaseException:
        topo.stop()
        raise
    return topo
