"""What a chaos run can act on: the cluster's containers and the run's worker processes."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.exceptions import ConfigurationError
from stream.settings import Settings
from stream.settings.environment import to_env


@dataclass
class Containers:
    """Container ids by role: brokers by node id, Redis, MirrorMaker; the network the
    brokers share (a network cut disconnects a broker from it) and each broker's alias."""

    brokers: dict[int, str] = field(default_factory=dict)
    redis: str | None = None
    mirrormaker: str | None = None
    network: str | None = None
    alias_prefix: str = ""
    regions: dict[str, Containers] = field(default_factory=dict)  # two-region clusters
    redis_nodes: dict[str, str] = field(default_factory=dict)  # Sentinel: name -> id
    secure_dir: str | None = None  # a secure dev cluster's CA and passwords (principals)

    @classmethod
    def from_dev_state(cls, state: Any) -> Containers:
        """From ``streaminfer dev up``'s record (one region, or two: the first region's
        containers at the top level, each region's in ``regions``)."""
        if not state.regions:
            brokers = {int(name.rsplit("-", 1)[1]): cid
                       for name, cid in state.containers.items() if name.startswith("kafka-")}
            nodes = {name: cid for name, cid in state.containers.items()
                     if name in ("redis-master", "redis-replica")}
            return cls(brokers, state.containers.get("redis"), None, state.network,
                       redis_nodes=nodes, secure_dir=state.secure_dir)
        networks = [state.network, *state.extra_networks]
        regions = {}
        for region, network in zip(state.regions, networks, strict=False):
            brokers = {int(name.rsplit("-", 1)[1]): cid for name, cid in state.containers.items()
                       if name.startswith(f"{region}-kafka-")}
            regions[region] = cls(brokers, state.containers.get(f"{region}-redis"), None,
                                  network, f"{region}-")
        first = next(iter(regions.values()))
        return cls(first.brokers, first.redis, state.containers.get("mirrormaker"),
                   first.network, first.alias_prefix, regions, secure_dir=state.secure_dir)

    @classmethod
    def from_regions(cls, running: Any) -> Containers:
        """From a :class:`stream.devcluster.regions.RunningRegions` (tests)."""
        regions = {name: cls.from_running(c) for name, c in running.clusters.items()}
        first = next(iter(regions.values()))
        return cls(first.brokers, first.redis, running.mirrormaker.id, first.network,
                   first.alias_prefix, regions)

    @classmethod
    def from_running(cls, running: Any) -> Containers:
        """From a :class:`stream.devcluster.cluster.RunningCluster` (tests)."""
        return cls({i: c.get_wrapped_container().id for i, c in running.kafka.items()},
                   running.redis.get_wrapped_container().id if running.redis else None,
                   None, running.network.name, running.alias_prefix)

    def docker(self, cid: str) -> Any:
        """The docker-py container object."""
        import docker

        return docker.from_env().containers.get(cid)

    def redis_node_ports(self) -> dict[str, int]:
        """Each Sentinel-topology Redis container's port (host network: the port is in its
        command line, ``--port N``, or ``--tls-port N`` with ``--port 0`` on TLS)."""
        ports = {}
        for cid in self.redis_nodes.values():
            cmd = " ".join(self.docker(cid).attrs["Config"]["Cmd"] or [])
            match = re.search(r"--(?:tls-)?port ([1-9]\d*)", cmd)
            if match:
                ports[cid] = int(match.group(1))
        return ports

    def redis_node_on_port(self, port: int) -> str:
        """The Sentinel-topology Redis container listening on ``port``."""
        for cid, listens in self.redis_node_ports().items():
            if listens == port:
                return cid
        raise ConfigurationError(f"no Redis container of this cluster listens on port {port}")

    def require_brokers(self, fault: str, at_least: int = 1) -> None:
        """Refuse a fault the cluster cannot take."""
        if len(self.brokers) < at_least:
            raise ConfigurationError(
                f"fault {fault} needs {at_least} brokers in containers this run can reach; "
                f"have {len(self.brokers)} (start one with `streaminfer dev up --brokers 3`)")


class Fleet:
    """The run's own workers: ``streaminfer worker`` processes with stable ids
    (``chaos-0``...), logging to ``log_dir``; killed, paused and restarted by index."""

    def __init__(self, settings: Settings, log_dir: Path, **overrides: Any) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = to_env(settings, **overrides)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.killed: set[int] = set()  # pids this run SIGKILLed itself

    def worker_id(self, index: int) -> str:
        """The stable id of worker ``index``."""
        return f"chaos-{index}"

    def start(self, index: int) -> None:
        """Start (or restart) worker ``index``."""
        log = (self.log_dir / f"{self.worker_id(index)}.log").open("ab")
        self.procs[index] = subprocess.Popen(  # noqa: S603 - our own worker command
            [sys.executable, "-m", "stream.cli.main", "worker", "--worker-id",
             self.worker_id(index)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def signal(self, index: int, signum: int) -> None:
        """Send a signal to worker ``index``."""
        self.procs[index].send_signal(signum)

    def kill(self, index: int) -> None:
        """SIGKILL worker ``index`` and reap it."""
        self.killed.add(self.procs[index].pid)
        self.procs[index].kill()
        self.procs[index].wait(30)

    def log_text(self, index: int) -> str:
        """What worker ``index`` logged so far."""
        path = self.log_dir / f"{self.worker_id(index)}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dump_stacks(self) -> None:
        """Ask every running worker to write its thread stacks to its log (SIGUSR1)."""
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGUSR1)
        time.sleep(1.0)  # faulthandler writes at once; give the files a moment

    def pids(self) -> list[int]:
        """Pids of the workers that run."""
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def unexpected_exits(self) -> dict[str, int]:
        """Workers that ended on their own: worker id -> exit code. A clean exit (0), our
        SIGTERM (-15) and a SIGKILL this run sent are expected; any other code is not,
        a SIGKILL from elsewhere (the kernel's OOM killer) included."""
        return {self.worker_id(i): p.returncode for i, p in self.procs.items()
                if p.poll() is not None and p.returncode not in (0, -15)
                and not (p.returncode == -9 and p.pid in self.killed)}

    def stop_all(self, grace_s: float = 30.0) -> None:
        """SIGTERM every worker, SIGKILL what is left after ``grace_s``."""
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGCONT)  # a paused worker cannot act on SIGTERM
                    p.terminate()
        end = time.monotonic() + grace_s
        for p in self.procs.values():
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.killed.add(p.pid)
                p.kill()
                p.wait(10)
