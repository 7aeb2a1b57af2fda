"""Broker faults: leader and controller kills, a paused broker, a rolling restart, a broker
cut off the network, and latency with packet loss on the path to a broker."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from confluent_kafka.admin import AdminClient

from stream.chaos.fault import Context, Fault, pause, unpause, wait_for
from stream.chaos.toxiproxy import NetnsProxy, ensure_toxiproxy
from stream.connect import kafka_config
from stream.devcluster.cluster import CONTROLLER_PORT, EXTERNAL_PORT
from stream.devcluster.secure import SECRETS_DIR
from stream.exceptions import ConfigurationError
from stream.settings import Settings


def _admin(ctx: Context) -> AdminClient:
    return _admin_of(ctx.settings)


def _admin_of(settings: Settings) -> AdminClient:
    return AdminClient({**kafka_config.admin(settings), "log_level": 2})


def leader_of(ctx: Context, partition: int = 0) -> int:
    """The broker leading ``partition`` of the request topic now."""
    meta = _admin(ctx).list_topics(ctx.settings.requests_topic, timeout=10)
    return int(meta.topics[ctx.settings.requests_topic].partitions[partition].leader)


def brokers_up(ctx: Context) -> set[int]:
    """Broker ids the cluster's metadata lists."""
    return registered_brokers(ctx.settings)


def registered_brokers(settings: Settings) -> set[int]:
    """Broker ids the metadata of the cluster ``settings`` point at lists (none when it
    does not answer)."""
    try:
        return set(_admin_of(settings).list_topics(timeout=5).brokers)
    except Exception:  # noqa: BLE001 - no answer: none known to be up
        return set()


def in_sync(ctx: Context, node: int) -> bool:
    """``node`` is back in every request partition's ISR it is a replica of."""
    try:
        meta = _admin(ctx).list_topics(ctx.settings.requests_topic, timeout=5)
    except Exception:  # noqa: BLE001 - a broker outage: not yet
        return False
    parts = meta.topics[ctx.settings.requests_topic].partitions.values()
    return all(node in p.isrs for p in parts if node in p.replicas)


def restart_broker(ctx: Context, node: int, deadline_s: float = 90.0) -> None:
    """Start a stopped broker container and wait until it is back in sync."""
    ctx.containers.docker(ctx.containers.brokers[node]).start()
    wait_for(lambda: node in brokers_up(ctx) and in_sync(ctx, node), deadline_s,
             f"broker {node} to rejoin and catch up")


def active_controller(ctx: Context) -> int:
    """The KRaft quorum leader, asked of the quorum itself (a client's metadata names an
    arbitrary broker as "controller" under KRaft). On a secure cluster the controller
    listener wants mutual TLS: the tool presents the node's own certificate. Bounded: a
    quorum that does not answer fails this in 20 s instead of the tool's 60 s retries."""
    node, cid = next(iter(ctx.containers.brokers.items()))
    alias = f"{ctx.containers.alias_prefix}kafka-{node}:{CONTROLLER_PORT}"
    config = "\n".join(controller_client_config(ctx.containers.secure_dir is not None))
    out = ctx.containers.docker(cid).exec_run(
        ["sh", "-c", f"printf '%s\\n' '{config}' > /tmp/streaminfer-quorum.properties && "
         "exec timeout 25 java -cp '/opt/kafka/libs/*' "
         "org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-controller \"$0\" "
         "--command-config /tmp/streaminfer-quorum.properties describe --status", alias])
    match = re.search(r"LeaderId:\s*(\d+)", out.output.decode(errors="replace"))
    if out.exit_code != 0 or match is None:
        raise RuntimeError(f"cannot find the active controller: {out.output[-300:]!r}")
    return int(match.group(1))


def controller_client_config(secure: bool) -> list[str]:
    """Client properties for a tool talking to a node's controller listener."""
    lines = ["request.timeout.ms=5000", "default.api.timeout.ms=20000"]
    if secure:  # CONTROLLER is SSL with client auth required (stream/devcluster/secure.py)
        lines += ["security.protocol=SSL", "ssl.keystore.type=PEM",
                  f"ssl.keystore.location={SECRETS_DIR}/node.pem", "ssl.truststore.type=PEM",
                  f"ssl.truststore.location={SECRETS_DIR}/ca.pem"]
    return lines


@dataclass
class LeaderKill(Fault):
    """SIGKILL the broker leading request partition 0, ``times`` times in a row (each
    time the new leader is found from metadata); each is restarted before the next."""

    name: ClassVar[str] = "leader-kill"
    summary: ClassVar[str] = "SIGKILL the leader of a request partition (repeatedly)"
    min_brokers: ClassVar[int] = 3
    hold_s: float = 5.0
    times: int = 2
    settle_s: float = 15.0

    def inject(self, ctx: Context) -> None:
        for round_ in range(self.times):
            node = leader_of(ctx)
            ctx.mark()
            ctx.containers.docker(ctx.containers.brokers[node]).kill()
            ctx.note(f"killed broker {node}, leader of partition 0 (kill {round_ + 1}/{self.times})")
            wait_for(lambda n=node: leader_of(ctx) not in (n, -1), 60,  # type: ignore[misc]
                     "a new leader for partition 0")
            if round_ + 1 < self.times:
                time.sleep(self.hold_s)
                restart_broker(ctx, node)
                # Let the rejoin settle (leaders and coordinators move back) so that the
                # next strike is measured on its own.
                time.sleep(self.settle_s)
            else:
                self._last = node

    def heal(self, ctx: Context) -> None:
        # Started, not awaited here: the load goes on while it rejoins, and the scenario
        # lasts until it is back in sync (``settled``) unless the plan says otherwise.
        ctx.containers.docker(ctx.containers.brokers[self._last]).start()
        ctx.note(f"broker {self._last} started again")

    def settled(self, ctx: Context) -> bool:
        """The killed broker is back and in every request partition's ISR."""
        return self._last in brokers_up(ctx) and in_sync(ctx, self._last)


@dataclass
class ControllerKill(Fault):
    """SIGKILL the active KRaft controller; restart it after ``hold_s``."""

    name: ClassVar[str] = "controller-kill"
    summary: ClassVar[str] = "SIGKILL the active KRaft controller"
    min_brokers: ClassVar[int] = 3
    hold_s: float = 10.0

    def inject(self, ctx: Context) -> None:
        self._node = active_controller(ctx)
        ctx.containers.docker(ctx.containers.brokers[self._node]).kill()
        ctx.note(f"killed node {self._node}, the active controller")

    def heal(self, ctx: Context) -> None:
        restart_broker(ctx, self._node)
        ctx.note(f"node {self._node} back; controller now {active_controller(ctx)}")


@dataclass
class BrokerPause(Fault):
    """Freeze a broker (SIGSTOP of its processes) past its session timeout, then thaw it."""

    name: ClassVar[str] = "broker-pause"
    summary: ClassVar[str] = "SIGSTOP a broker past its session timeout, then SIGCONT"
    min_brokers: ClassVar[int] = 3
    hold_s: float = 15.0

    def inject(self, ctx: Context) -> None:
        self._node = leader_of(ctx)
        pause(ctx.containers.docker(ctx.containers.brokers[self._node]))
        ctx.note(f"paused broker {self._node} (leader of partition 0) for {self.hold_s:.0f}s")

    def heal(self, ctx: Context) -> None:
        unpause(ctx.containers.docker(ctx.containers.brokers[self._node]))
        wait_for(lambda: in_sync(ctx, self._node), 90, f"broker {self._node} back in sync")
        ctx.note(f"broker {self._node} resumed and back in sync")


@dataclass
class RollingRestart(Fault):
    """Restart every broker in turn (SIGTERM, wait until it is back in sync, next), the
    active controller's node last, as operators (and Strimzi's roller) do: restarting it
    earlier moves the quorum's leadership once more, and moves it while another node is
    still catching up."""

    name: ClassVar[str] = "rolling-restart"
    summary: ClassVar[str] = "restart every broker in turn, waiting for each to catch up"
    min_brokers: ClassVar[int] = 3
    hold_s: float = 0.0

    def inject(self, ctx: Context) -> None:
        try:
            controller: int | None = active_controller(ctx)
        except Exception as exc:  # noqa: BLE001 - a node down (a paired strike): id order
            controller = None
            ctx.note(f"the active controller is not known ({exc}); restarting in id order")
        for node in restart_order(sorted(ctx.containers.brokers), controller):
            ctx.containers.docker(ctx.containers.brokers[node]).stop(timeout=30)
            restart_broker(ctx, node)
            ctx.note(f"broker {node} restarted and back in sync"
                     + (" (the active controller, last)" if node == controller else ""))


def restart_order(nodes: list[int], controller: int | None) -> list[int]:
    """``nodes`` in order, the active controller moved to the end."""
    return [n for n in nodes if n != controller] + ([controller] if controller in nodes else [])


@dataclass
class BrokerCut(Fault):
    """Disconnect the leader of partition 0 from the cluster's network (the others keep a
    quorum), then reconnect it under its alias."""

    name: ClassVar[str] = "broker-cut"
    summary: ClassVar[str] = "cut a broker off the network while the others keep a quorum"
    min_brokers: ClassVar[int] = 3
    hold_s: float = 15.0

    def needs(self, ctx: Context) -> None:
        super().needs(ctx)
        if ctx.containers.network is None:
            raise ConfigurationError("broker-cut needs the cluster's Docker network")

    def _network(self, ctx: Context) -> object:
        import docker

        return docker.from_env().networks.get(ctx.containers.network)

    def inject(self, ctx: Context) -> None:
        self._node = leader_of(ctx)
        self._network(ctx).disconnect(ctx.containers.brokers[self._node])  # type: ignore[attr-defined]
        ctx.note(f"cut broker {self._node} (leader of partition 0) off the network")

    def heal(self, ctx: Context) -> None:
        alias = f"{ctx.containers.alias_prefix}kafka-{self._node}"
        self._network(ctx).connect(ctx.containers.brokers[self._node],  # type: ignore[attr-defined]
                                   aliases=[alias])
        wait_for(lambda: in_sync(ctx, self._node), 120, f"broker {self._node} back in sync")
        ctx.note(f"broker {self._node} reconnected and back in sync")


@dataclass
class Netem(Fault):
    """Added latency and packet loss on what a broker sends its clients: ``tc netem`` in
    the broker container's network namespace where the kernel has ``sch_netem``, else
    Toxiproxy in that namespace plus an iptables loss rule (:mod:`stream.chaos.toxiproxy`).
    Run from the host: needs root."""

    name: ClassVar[str] = "netem"
    summary: ClassVar[str] = "latency and packet loss on the path to a broker (netem/Toxiproxy)"
    min_brokers: ClassVar[int] = 1
    hold_s: float = 15.0
    delay_ms: int = 100
    jitter_ms: int = 20
    loss_pct: float = 5.0

    def needs(self, ctx: Context) -> None:
        super().needs(ctx)
        if shutil.which("nsenter") is None or shutil.which("tc") is None:
            raise ConfigurationError("netem needs nsenter and tc on this host (Debian: "
                                     "apt-get install util-linux iproute2) and root")
        self._node = leader_of(ctx)
        self._proxy: NetnsProxy | None = None
        try:  # a zero-delay netem qdisc, at once removed: does this kernel have sch_netem?
            self._tc(ctx, "add", delay_ms=0)
            self._tc(ctx, "del")
            self._how = "tc netem"
        except subprocess.CalledProcessError:
            NetnsProxy.check_tools()
            ensure_toxiproxy()
            self._how = "Toxiproxy + iptables (this kernel has no sch_netem)"

    def _container(self, ctx: Context) -> Any:
        return ctx.containers.docker(ctx.containers.brokers[self._node])

    def _tc(self, ctx: Context, action: str, delay_ms: int | None = None) -> None:
        pid = self._container(ctx).attrs["State"]["Pid"]
        # The interface's name is not always eth0 (a reconnected container gets eth1...).
        links = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show"],  # noqa: S603, S607
                               check=True, capture_output=True, text=True, timeout=30).stdout
        device = next((line.split(":")[1].strip().split("@")[0] for line in links.splitlines()
                       if ": lo:" not in line), "eth0")
        delay = self.delay_ms if delay_ms is None else delay_ms
        netem = (["netem", "delay", f"{delay}ms", f"{self.jitter_ms if delay else 0}ms",
                  "loss", f"{self.loss_pct if delay else 0}%"] if action == "add" else [])
        subprocess.run(["nsenter", "-t", str(pid), "-n", "tc", "qdisc", action, "dev", device,  # noqa: S603, S607
                        "root", *netem], check=True, capture_output=True, timeout=30)

    def inject(self, ctx: Context) -> None:
        if self._how == "tc netem":
            self._tc(ctx, "add")
        else:
            container = self._container(ctx)
            ip = next(n["IPAddress"] for n in container.attrs["NetworkSettings"]["Networks"]
                      .values() if n.get("IPAddress"))
            self._proxy = NetnsProxy(container.attrs["State"]["Pid"], ip, EXTERNAL_PORT)
            self._proxy.start(self.delay_ms, self.jitter_ms, self.loss_pct)
        ctx.note(f"broker {self._node}: +{self.delay_ms}±{self.jitter_ms} ms, "
                 f"{self.loss_pct:g}% loss on what it sends clients ({self._how})")

    def heal(self, ctx: Context) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        elif self._how == "tc netem":
            self._tc(ctx, "del")
        ctx.note(f"broker {self._node}: latency and loss removed")
