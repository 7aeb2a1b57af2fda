"""Who a chaos run acts as on a secure cluster, and the rights its own namespace needs.

On the open stack every part of a run uses the same settings. On the secure stack
(`dev up --secure`, `--profile production`) the run's workers act as the ``worker``
principal and its load as ``producer``, as in production, while the checker, the
answers reader and the faults act as ``admin`` (an operator's view). The declaration
(stream/access/access.toml) grants rights per namespace and a run has a namespace of its
own, so for the run's length its namespace gets the declared rights too: Kafka ACLs
added (and removed afterwards), and the Redis users' key patterns for it added beside
the cluster's namespace on every Redis node (afterwards each user is set back to the
declaration for the cluster's namespace). Nothing beyond the declaration is granted:
a worker refused here would be refused in production.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.chaos.target import Containers
from stream.settings import Settings

# The parts of a Redis ACL rule that name keys or channels (namespaced in the declaration).
_PATTERN = re.compile(r"^(~|%R~|%W~|%RW~|&)")


@dataclass(frozen=True)
class Roles:
    """The settings each part of a run uses."""

    worker: Settings
    producer: Settings
    operator: Settings
    release: Settings  # model decisions (canary, promote)
    retrain: Settings  # retraining runs and their releases


def redis_ports(containers: Containers, settings: Settings) -> list[int]:
    """The Redis nodes' ports: each Sentinel-topology node's (from its command line), or
    the standalone Redis of ``settings``."""
    ports = list(containers.redis_node_ports().values())
    if not ports:
        match = re.search(r":(\d+)(?:/|$)", settings.redis_url)
        if match:
            ports.append(int(match.group(1)))
    return ports


def _redis_node(admin: Settings, port: int) -> Any:
    """A client of the one Redis node on ``port`` (TLS and the admin's login)."""
    from stream.connect.redis_pool import make_redis

    scheme = "rediss" if admin.redis_url.startswith("rediss") else "redis"
    node = admin.model_copy(update={"redis_mode": "standalone",
                                    "redis_url": f"{scheme}://127.0.0.1:{port}/0"})
    return make_redis(node, timeout_s=5.0)


def _kafka_admin(admin: Settings) -> Any:
    from confluent_kafka.admin import AdminClient

    from stream.connect import kafka_config

    return AdminClient({**kafka_config.admin(admin), "log_level": 2})


@contextlib.contextmanager
def acting(settings: Settings, containers: Containers, home_namespace: str
           ) -> Iterator[Roles]:
    """The run's roles; on a secure cluster (``containers.secure_dir``), with its
    namespace granted what the declaration gives for the length of the block.
    ``home_namespace``: the cluster's own namespace, whose Redis rules are restored."""
    if containers.secure_dir is None or settings.regions:
        # Two secure regions: the run acts as admin in both (the grants are per cluster;
        # not yet done for a regional run).
        yield Roles(settings, settings, settings, settings, settings)
        return
    from stream.access import kafka_acls, redis_acls
    from stream.access.declaration import load
    from stream.devcluster.progress import say
    from stream.devcluster.secure import SecureMaterial, acting_as

    material = SecureMaterial(Path(containers.secure_dir))
    declaration = load(namespace=settings.namespace)
    kafka = _kafka_admin(settings)
    added = sorted(kafka_acls.desired(declaration) - kafka_acls.current(kafka, None))
    kafka_acls.apply(kafka_acls.AclDiff(added, []), kafka)
    ports = redis_ports(containers, settings)
    for port in ports:
        node = _redis_node(settings, port)
        for name, p in declaration.principals.items():
            patterns = [r for r in p.redis or () if _PATTERN.match(r)]
            if patterns and not p.super_user:
                node.execute_command("ACL", "SETUSER", name, *patterns)
        redis_acls.save_if_file(node)
    say(f"  secure: {len(added)} Kafka ACLs and the Redis users' key patterns for "
        f"{settings.namespace} granted (workers act as worker, the load as producer)")
    try:
        def role(name: str) -> Settings:
            return acting_as(settings, material, name, settings.bootstrap_servers,
                             settings.redis_url)

        yield Roles(role("worker"), role("producer"), settings, role("release"),
                    role("retrain"))
    finally:
        _revoke(settings, added, load(namespace=home_namespace), ports, material.passwords)


def _revoke(admin: Settings, added: list[Any], home: Any, ports: list[int],
            passwords: Path) -> None:
    """Take the run's grants back; what cannot be (a cluster still away) is said, with
    the command that finishes the job."""
    from stream.access import kafka_acls, redis_acls
    from stream.devcluster.progress import say

    failed = []
    try:
        kafka_acls.apply(kafka_acls.AclDiff([], added), _kafka_admin(admin))
    except Exception as exc:  # noqa: BLE001 - reported below; the run's verdict stands
        failed.append(f"Kafka: {exc}")
    for port in ports:
        try:
            node = _redis_node(admin, port)
            redis_acls.apply(redis_acls.diff(home, node, passwords), node, passwords)
            redis_acls.save_if_file(node)
        except Exception as exc:  # noqa: BLE001 - reported below
            failed.append(f"Redis on port {port}: {exc}")
    if failed:
        say(f"  secure: could not take back every grant of {admin.namespace} "
            f"({'; '.join(failed)}): `streaminfer acls apply` sets the Redis users back to "
            "the declaration; Kafka ACLs left on the run's names name topics that are gone")
