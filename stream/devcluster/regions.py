"""Two regions on one machine: clusters ``east`` and ``west`` (each with its Redis) and
MirrorMaker 2 in dedicated mode replicating the namespace's topics both ways.

Each region's brokers carry the region in their network alias (``east-kafka-1``), and
MirrorMaker's container is attached to both regions' networks, so it reaches both the
way it would across data centres: by name, on the internal listener. Clients on the
host reach each region on its own published 127.0.0.1 ports.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

import docker

from stream.devcluster.cluster import LABEL, RunningCluster, start_cluster
from stream.devcluster.progress import say, step
from stream.devcluster.secure import SECRETS_DIR, SecureStack
from stream.exceptions import InfrastructureError
from stream.settings import Settings

REGIONS = ("east", "west")
MIRRORED = ("requests", "predictions", "dlq", "models")
CHAOS_SUFFIX = r"(-chaos-[a-z0-9-]+)?"  # `streaminfer chaos run` scenario namespaces


def mm2_properties(namespace: str, bootstrap: dict[str, str], replication_factor: int = 1,
                   interval_s: int = 5, secure: bool = False) -> str:
    """MirrorMaker 2 configuration: every region replicates the namespace's requests,
    predictions, dead letters and model control topic to every other region, with
    checkpoints and group offset sync; intervals short enough for tests. Chaos scenarios'
    namespaces (``<namespace>-chaos-<scenario>``) are replicated too. With ``secure``, it
    connects to each region as the ``mirrormaker`` principal (:func:`mm2_secure_lines`)."""
    own = re.escape(namespace) + CHAOS_SUFFIX
    topics = own + r"\.(" + "|".join(MIRRORED) + ")"
    groups = own + r"\..*"
    rf = replication_factor
    lines = [f"clusters = {', '.join(bootstrap)}"]
    lines += [f"{name}.bootstrap.servers = {servers}" for name, servers in bootstrap.items()]
    for src in bootstrap:
        for dst in bootstrap:
            if src != dst:
                lines += [f"{src}->{dst}.enabled = true", f"{src}->{dst}.topics = {topics}",
                          f"{src}->{dst}.groups = {groups}"]
    lines += [
        "replication.policy.class = org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
        "emit.checkpoints.enabled = true",
        f"emit.checkpoints.interval.seconds = {interval_s}",
        "sync.group.offsets.enabled = true",
        f"sync.group.offsets.interval.seconds = {interval_s}",
        "emit.heartbeats.enabled = true",
        "emit.heartbeats.interval.seconds = 1",
        f"refresh.topics.interval.seconds = {interval_s}",
        f"refresh.groups.interval.seconds = {interval_s}",
        "sync.topic.configs.enabled = true",
        f"replication.factor = {rf}",
        f"checkpoints.topic.replication.factor = {rf}",
        f"heartbeats.topic.replication.factor = {rf}",
        f"offset-syncs.topic.replication.factor = {rf}",
        f"offset.storage.replication.factor = {rf}",
        f"status.storage.replication.factor = {rf}",
        f"config.storage.replication.factor = {rf}",
        "producer.override.acks = all",
        # One MirrorMaker node: when a region's cluster returns, its Connect group must not
        # hold the departed member's connectors for the default 5 minutes.
        "scheduled.rebalance.max.delay.ms = 0",
        "tasks.max = 2",
    ]
    if secure:
        lines += mm2_secure_lines(list(bootstrap))
    return "\n".join(lines) + "\n"


def mm2_secure_lines(clusters: list[str]) -> list[str]:
    """SASL_SSL with SCRAM as ``mirrormaker`` to every cluster. The password is not in
    the properties (which travel in the container's environment): the entrypoint puts it
    in place of ``@MM2_PASSWORD@`` from the secret file the engine copied in, writing the
    result readable by MirrorMaker's user only. (Kafka's FileConfigProvider was tried
    first: MirrorMaker 4.3.1 in dedicated mode sent the ``${file:...}`` text itself as the
    password, and the brokers refused it.) ACL sync is off: each region's ACLs come from
    its own `streaminfer acls apply`, and syncing them would need the right to alter ACLs
    on the target."""
    from stream.devcluster.secure import MM2_PASSWORD_PLACEHOLDER

    password = MM2_PASSWORD_PLACEHOLDER
    lines = ["sync.topic.acls.enabled = false"]
    for name in clusters:
        lines += [f"{name}.security.protocol = SASL_SSL",
                  f"{name}.sasl.mechanism = SCRAM-SHA-512",
                  f"{name}.sasl.jaas.config = org.apache.kafka.common.security.scram."
                  f'ScramLoginModule required username="mirrormaker" password="{password}";',
                  f"{name}.ssl.truststore.type = PEM",
                  f"{name}.ssl.truststore.location = {SECRETS_DIR}/ca.pem"]
    return lines


@dataclass
class RunningRegions:
    """Both regions and the MirrorMaker between them."""

    clusters: dict[str, RunningCluster]
    mirrormaker: Any = None  # docker SDK container
    properties: str = ""
    secure: SecureStack | None = None  # both regions secure (start_regions(secure=...))

    def settings(self, region: str, base: Settings, principal: str = "admin") -> Settings:
        """``base`` pointed at ``region`` (on secure regions: acting as ``principal``)."""
        cluster = self.clusters[region]
        if self.secure is None:
            return base.model_copy(update={"bootstrap_servers": cluster.bootstrap_servers,
                                           "redis_url": cluster.redis_url})
        from stream.devcluster.secure import acting_as

        return acting_as(base, self.secure.material, principal, cluster.bootstrap_servers,
                         cluster.redis_url)

    def logs(self, tail: int = 50) -> str:
        """The last lines MirrorMaker printed."""
        if self.mirrormaker is None:
            return ""
        out: bytes = self.mirrormaker.logs(tail=tail)
        return out.decode(errors="replace")

    def restart_mirrormaker(self) -> None:
        """Restart MirrorMaker: the remedy its own log names when a Connect herder has
        stopped tasks that were blocked on a cluster that went away."""
        if self.mirrormaker is not None:
            self.mirrormaker.restart(timeout=10)

    def stop(self) -> None:
        """Remove MirrorMaker, then both regions."""
        if self.mirrormaker is not None:
            try:
                self.mirrormaker.remove(force=True)
            except Exception as exc:  # noqa: BLE001 - best-effort cleanup of a container we started; logged
                say(f"could not remove the MirrorMaker container: {exc}")
        for cluster in self.clusters.values():
            cluster.stop()


def _await_heartbeats(regions: RunningRegions, deadline_s: float) -> None:
    """Until each region holds a heartbeat replicated from every other one."""
    from stream.regions.replication_status import newest_heartbeat

    at = {name: regions.settings(name, Settings()) for name in regions.clusters}
    end = time.monotonic() + deadline_s
    missing = [(s, t) for t in at for s in at if s != t]
    while missing:
        missing = [(s, t) for s, t in missing if newest_heartbeat(at[t], f"{s}.heartbeats") is None]
        if not missing:
            return
        if time.monotonic() > end:
            raise InfrastructureError(
                f"MirrorMaker did not replicate {', '.join(f'{s}->{t}' for s, t in missing)} "
                f"within {deadline_s:.0f} s; its log:\n{regions.logs()}")
        time.sleep(1.0)


def start_regions(brokers: int, kafka_image: str, redis_image: str, mirrormaker_image: str,
                  namespace: str, deadline_s: float = 180.0,
                  name_prefix: str | None = None,
                  wait_for_replication: bool = False,
                  mirrormaker_env: dict[str, str] | None = None,
                  mirrormaker_extra: str = "",
                  secure: SecureStack | None = None) -> RunningRegions:
    """Start east and west (``brokers`` nodes each, one Redis each) and MirrorMaker 2;
    with ``name_prefix`` the containers are named ``<prefix>-<region>-kafka-1`` ... and
    ``<prefix>-mirrormaker``. MirrorMaker restarts when it fails (a region down while it
    starts made it exit for good); ``wait_for_replication`` returns only once its
    heartbeats arrive in both regions (about 20 s after start). ``mirrormaker_env`` adds to
    MirrorMaker's environment (e.g. ``MM2_WATCHDOG_STALL_S``); ``mirrormaker_extra`` adds
    lines to its properties (later lines win). With ``secure`` both regions are secure
    clusters (one CA, the same principals) and MirrorMaker connects as ``mirrormaker``
    with the declaration's grants applied to the namespace in both."""
    regions = RunningRegions({}, secure=secure)
    try:
        for name in REGIONS:
            say(f"region {name}:")
            regions.clusters[name] = start_cluster(
                brokers, kafka_image, redis_image, deadline_s=deadline_s,
                alias_prefix=f"{name}-",
                name_prefix=f"{name_prefix}-{name}" if name_prefix else None, secure=secure)
        if secure is not None:
            from stream.devcluster.secure import grant

            for name in regions.clusters:
                grant(regions.settings(name, Settings(namespace=namespace)), secure.material)
        bootstrap = {n: c.internal_bootstrap for n, c in regions.clusters.items()}
        regions.properties = mm2_properties(namespace, bootstrap, min(3, brokers),
                                            secure=secure is not None)
        if mirrormaker_extra:
            regions.properties += "\n" + mirrormaker_extra.strip() + "\n"
        client = docker.from_env()
        first, *others = regions.clusters.values()
        with step(f"starting MirrorMaker 2 ({mirrormaker_image}) between "
                  f"{' and '.join(REGIONS)}"):
            jvm = os.environ.get("STREAMINFER_KAFKA_OPTS")  # as the brokers (tests: C1 only)
            secrets = {"STREAMINFER_SECRETS_DIR": SECRETS_DIR} if secure is not None else {}
            container = client.containers.create(
                mirrormaker_image, environment={"MM2_PROPERTIES": regions.properties, **secrets,
                                              **({"MM2_OPTS": jvm} if jvm else {}),
                                              **(mirrormaker_env or {})},
                network=first.network.name, labels={LABEL: first.network.name}, detach=True,
                name=f"{name_prefix}-mirrormaker" if name_prefix else None,
                restart_policy={"Name": "on-failure"})
            regions.mirrormaker = container
            for cluster in others:
                client.networks.get(cluster.network.name).connect(container)
            container.start()
            if secure is not None:
                from stream.devcluster.secure import copy_secrets

                copy_secrets(container, secure.mirrormaker_files())
            container.reload()
            if container.status == "exited":
                raise InfrastructureError("MirrorMaker exited at start:\n" + regions.logs())
        if wait_for_replication:
            with step("waiting for MirrorMaker to replicate both ways (heartbeats)"):
                _await_heartbeats(regions, deadline_s)
    except BaseException:
        regions.stop()
        raise
    return regions
