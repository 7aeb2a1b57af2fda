"""The secure cluster the benchmark's ``streaminfer-secure`` system runs against."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import say
from stream.devcluster.cluster import RunningCluster, start_cluster
from stream.devcluster.secure import SecureMaterial, acting_as
from stream.settings import Settings


@dataclass
class SecureTarget:
    """A secure single-broker cluster (``dev up --secure``'s kind) for streaminfer-secure."""

    running: RunningCluster
    material: SecureMaterial

    @classmethod
    def start(cls, kafka_image: str, redis_image: str) -> SecureTarget:
        """Certificates, users and the cluster, in a temporary folder."""
        from stream.devcluster.secure import SecureStack

        root = Path(tempfile.mkdtemp(prefix="bench-secure-"))
        stack = SecureStack.create(root)
        say("starting the secure cluster for streaminfer-secure (SASL_SSL, TLS Redis)")
        return cls(start_cluster(1, kafka_image, redis_image, secure=stack), stack.material)

    def as_principal(self, base: Settings, principal: str) -> Settings:
        """``base`` on this cluster as ``principal``."""
        return acting_as(base, self.material, principal, self.running.bootstrap_servers,
                         self.running.redis_url)

    def stop(self) -> None:
        """Remove the containers and the material."""
        self.running.stop()
        shutil.rmtree(self.material.root, ignore_errors=True)
