"""The secure compose stacks' material (``streaminfer dev secrets DIR``), one folder per
service, for compose/docker-compose.secure.yml and docker-compose.regions.secure.yml
(Kafka and Redis certificates name both files' services).

The same CA, certificates, passwords and users as ``dev up --secure``
(:mod:`stream.devcluster.secure`), laid out for a compose project instead of copied into
containers by the engine: compose's file secrets are bind mounts that keep the host's
owner and mode, and the services run as other users (Kafka, Redis and the workers as
10001, Prometheus as 65534, Grafana as 472). So the stack's one-shot ``secrets`` service
(root) copies each folder into that service's own volume, owned by its user with mode
0600, and writes ``.ready`` last; no service sees another's keys, and nothing lands in an
image or in ``docker inspect``'s environment.

``DIR`` (0700, files 0600):

* ``kafka/``: the node's key and certificate, the CA, the SCRAM users for the format;
* ``redis/``: Redis' key and certificate, the CA, the ACL file (default user off);
* ``topics/``: the admin's password (the job that makes the topics and applies the ACLs);
* ``worker/``: the worker's password, its HTTPS certificate and key (the name
  ``worker``), the CA that client certificates must chain to, the metrics token;
* ``prometheus/``: the CA, Prometheus' client certificate and key, the metrics token;
* ``grafana/``: the admin password;
* ``mirrormaker/`` (the two-region file): the CA and MirrorMaker's password;
* ``host/`` (never copied to a container): the CA and its key, one password file and client
  certificate per principal (``streaminfer dev secrets DIR --env --as <principal>``
  prints a principal's settings for commands on the host).
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from stream.devcluster import pki
from stream.devcluster.secure import (
    SecureMaterial,
    SecureStack,
    kafka_files,
    redis_files,
)

# The uid each service of compose/docker-compose.secure.yml runs as.
SERVICE_UIDS = {"kafka": 10001, "redis": 10001, "topics": 10001, "worker": 10001,
                "mirrormaker": 10001, "prometheus": 65534, "grafana": 472}
COMPLETE = ".complete"  # written last: the folder holds a whole set
# The service names of both compose files the certificates must cover.
COMPOSE_NAMES = {"kafka": ["kafka", "east-kafka-1", "west-kafka-1"],
                 "redis": ["redis", "east-redis", "west-redis"]}


@dataclass(frozen=True)
class ComposeSecrets:
    """What ``dev secrets`` made (or found) in ``root``."""

    root: Path
    made: bool  # False: a complete set was already there and kept

    @property
    def material(self) -> SecureMaterial:
        """The CA, passwords and client certificates for clients on the host."""
        return SecureMaterial(self.root / "host")

    def service(self, name: str) -> Path:
        """The folder the ``secrets`` service copies into ``name``'s volume."""
        return self.root / name


def make(root: Path, namespace: str, renew: bool = False) -> ComposeSecrets:
    """A complete set in ``root`` (kept when one is there, unless ``renew``)."""
    if (root / COMPLETE).exists() and not renew:
        return ComposeSecrets(root, made=False)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o700)
    root.chmod(0o700)
    stack = SecureStack.create(root / "host", namespace, extra_names=COMPOSE_NAMES)
    m = stack.material
    ca = pki.Issued(m.read("ca.key"), m.read("ca.pem"))
    token = secrets.token_urlsafe(32).encode() + b"\n"
    worker_http = pki.issue(ca, "worker", ["worker", "localhost"], ["127.0.0.1"])
    prometheus = pki.issue(ca, "prometheus", [], server=False)
    files: dict[str, dict[str, bytes]] = {
        "kafka": kafka_files(m, stack.declaration),
        "redis": redis_files(m, stack.declaration),
        "topics": {"ca.pem": m.read("ca.pem"),
                   "admin.password": m.password_file("admin").read_bytes()},
        "worker": {"ca.pem": m.read("ca.pem"),
                   "worker.password": m.password_file("worker").read_bytes(),
                   "http.crt": worker_http.cert_pem, "http.key": worker_http.key_pem,
                   "metrics-token": token},
        "prometheus": {"ca.pem": m.read("ca.pem"), "prometheus.crt": prometheus.cert_pem,
                       "prometheus.key": prometheus.key_pem, "metrics-token": token},
        "grafana": {"admin.password": secrets.token_urlsafe(18).encode() + b"\n"},
        "mirrormaker": stack.mirrormaker_files(),
    }
    for service, content in files.items():
        for name, data in content.items():
            pki.write_private(root / service / name, data)
    pki.write_private(root / COMPLETE, b"")
    return ComposeSecrets(root, made=True)


def host_env(made: ComposeSecrets, principal: str, kafka_port: int, redis_port: int,
             certificate: bool = False, certs_port: int = 9094) -> dict[str, str]:
    """The STREAMINFER_* settings of ``principal`` for a command on the host against the
    secure compose stack published on ``kafka_port``/``redis_port`` (``certificate``: the
    principal's client certificate on the CERTS listener at ``certs_port``)."""
    from stream.devcluster.secure import client_env

    env = client_env(made.material.root, principal, certificate)
    env["STREAMINFER_BOOTSTRAP_SERVERS"] = (f"127.0.0.1:{certs_port}" if certificate
                                            else f"127.0.0.1:{kafka_port}")
    env["STREAMINFER_REDIS_URL"] = f"rediss://127.0.0.1:{redis_port}/0"
    env["STREAMINFER_REPLICATION_FACTOR"] = "1"
    env["STREAMINFER_MIN_INSYNC_REPLICAS"] = "1"
    return env
