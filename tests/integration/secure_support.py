"""The secure stack in tests: one secure single-broker cluster per session (started on
first use) and settings acting as each principal of the access declaration."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.devcluster.cluster import RunningCluster, start_cluster
from stream.devcluster.secure import SecureStack, acting_as, grant
from stream.settings import Settings


@dataclass
class SecureCluster:
    """A running secure cluster and its material."""

    running: RunningCluster
    stack: SecureStack

    def as_principal(self, base: Settings, principal: str, certificate: bool = False
                     ) -> Settings:
        """``base`` (its namespace and tuning) acting as ``principal`` (``certificate``:
        authenticated by its client certificate on the CERTS listener, not SCRAM)."""
        bootstrap = (self.running.certs_bootstrap if certificate
                     else self.running.bootstrap_servers)
        assert bootstrap is not None
        return acting_as(base, self.stack.material, principal, bootstrap,
                         self.running.redis_url, certificate)

    def grant(self, admin: Settings) -> None:
        """The declaration's ACLs and Redis users for ``admin``'s namespace."""
        grant(admin, self.stack.material)

    def stop(self) -> None:
        """Remove the containers and the certificates and passwords."""
        self.running.stop()
        shutil.rmtree(self.stack.material.root.parent, ignore_errors=True)


def start_secure(kafka_image: str, redis_image: str) -> SecureCluster:
    """A secure single-broker cluster with the packaged declaration's principals."""
    root = Path(tempfile.mkdtemp(prefix="streaminfer-secure-"))
    stack = SecureStack.create(root / "secure", "streaminfer")
    return SecureCluster(start_cluster(1, kafka_image, redis_image, secure=stack), stack)


def from_env(env: Mapping[str, str], **extra: Any) -> Settings:
    """Settings from STREAMINFER_* variables, as `dev env` and `dev secrets --env` print
    them (``extra``: more fields)."""
    fields: dict[str, Any] = {k.removeprefix("STREAMINFER_").lower(): v for k, v in env.items()
                              if k.startswith("STREAMINFER_")}
    return Settings(**{**fields, **extra})
