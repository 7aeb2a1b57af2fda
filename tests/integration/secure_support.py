"""The secure stack in tests: one secure single-broker cluster per session (started on
first use) and settings acting as each principal of the access declaration."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from stream.access import kafka_acls, redis_acls
from stream.access.declaration import load
from stream.connect import kafka_config
from stream.connect.redis_pool import make_redis
from stream.devcluster.cluster import RunningCluster, start_cluster
from stream.devcluster.secure import SecureStack, prepare
from stream.settings import Settings


@dataclass
class SecureCluster:
    """A running secure cluster and its material."""

    running: RunningCluster
    stack: SecureStack

    def as_principal(self, base: Settings, principal: str) -> Settings:
        """``base`` (its namespace and tuning) acting as ``principal``."""
        material = self.stack.material
        return base.model_copy(update={
            "bootstrap_servers": self.running.bootstrap_servers,
            "redis_url": self.running.redis_url,
            "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": principal, "sasl_password_file": material.password_file(principal),
            "ssl_ca_location": material.ca, "redis_username": principal,
            "redis_password_file": material.password_file(principal),
            "redis_ca_file": material.ca})

    def grant(self, admin: Settings) -> None:
        """The declaration's ACLs and Redis users for ``admin``'s namespace."""
        declaration = load(namespace=admin.namespace)
        client = AdminClient(kafka_config.admin(admin))
        kafka_acls.apply(kafka_acls.diff(declaration, client, admin.namespace), client)
        r: Any = make_redis(admin, timeout_s=5.0)
        redis_acls.apply(redis_acls.diff(declaration, r, self.stack.material.passwords), r,
                         self.stack.material.passwords)


def start_secure(kafka_image: str, redis_image: str) -> SecureCluster:
    """A secure single-broker cluster with the packaged declaration's principals."""
    declaration = load(namespace="streaminfer")
    root = Path(tempfile.mkdtemp(prefix="streaminfer-secure-"))
    stack = SecureStack(prepare(root / "secure", declaration, [""]), declaration)
    return SecureCluster(start_cluster(1, kafka_image, redis_image, secure=stack), stack)
