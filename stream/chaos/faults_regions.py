"""Two-region faults: a whole region stopped, paused or cut off and restored (workers and
producers fail over and back), and MirrorMaker killed.

They need ``streaminfer dev up --regions 2`` (or the test's two regions): the home region
is the first of ``--regions``; load and workers start there, the fault takes its Kafka and
Redis away, the heal brings them back, and the scenario lasts until producer and workers
are home again and MirrorMaker replicates both ways, so that every region's view (its
own answers and the mirrored ones) can be checked complete.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from stream.chaos.fault import Context, Fault, pause, unpause, wait_for
from stream.chaos.target import Containers
from stream.connect.reachability import require_kafka
from stream.exceptions import ConfigurationError, KafkaUnreachableError
from stream.regions.failover import parse_regions, region_settings
from stream.regions.replication_status import newest_heartbeat
from stream.settings import Settings

FRESH_MS = 10_000  # a replicated heartbeat younger than this: replication runs
SWITCH = re.compile(r"(failover|failback) done: serving (\w+)")


def replicating(ctx: Context) -> bool:
    """MirrorMaker's heartbeats from every region arrive fresh in every other one."""
    regions = parse_regions(str(ctx.settings.regions))
    now = time.time() * 1000
    for here, bootstrap in regions.items():
        at = region_settings(ctx.settings, bootstrap)
        for source in regions:
            if source != here:
                newest = newest_heartbeat(at, f"{source}.heartbeats")
                if newest is None or newest < now - FRESH_MS:
                    return False
    return True


def moves_home(log_text: str) -> list[int]:
    """When (wall ms) a worker's log says it began a failback (JSON lines)."""
    out = []
    for line in log_text.splitlines():
        if '"failback ' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if str(entry.get("msg", "")).startswith("failback ") and "ts" in entry:
            out.append(int(float(entry["ts"]) * 1000))
    return out


def _answers(settings: Settings) -> bool:
    """The region's Kafka answers a metadata request."""
    try:
        require_kafka(settings.model_copy(update={"connect_timeout_s": 2.0}))
    except KafkaUnreachableError:
        return False
    return True


def mirrormaker_restarts(ctx: Context) -> int:
    """How often Docker restarted MirrorMaker (its watchdog exits on a stall)."""
    if ctx.containers.mirrormaker is None:
        return 0
    container = ctx.containers.docker(ctx.containers.mirrormaker)
    container.reload()
    return int(container.attrs.get("RestartCount", 0))


class RegionFault(Fault):
    """Needs two regions and MirrorMaker; reports MirrorMaker restarts during the fault."""

    regional: ClassVar[bool] = True
    # failback waits --region-failback-after-s; a MirrorMaker stalled by the outage is
    # restarted by its watchdog MM2_WATCHDOG_RETURN_S (12) after the region's return
    aftermath_s: ClassVar[float] = 180.0
    hold_s: float = 20.0

    def needs(self, ctx: Context) -> None:
        if len(ctx.containers.regions) < 2 or not ctx.settings.regions:
            raise ConfigurationError(f"{self.name} needs two regions in containers this run "
                                     "can reach (`streaminfer dev up --regions 2`)")
        if ctx.containers.mirrormaker is None:
            raise ConfigurationError(f"{self.name} needs the MirrorMaker container of "
                                     "`streaminfer dev up --regions 2`")
        self._restarts = mirrormaker_restarts(ctx)

    def home(self, ctx: Context) -> tuple[str, Containers]:
        """The preferred region (the first of --regions) and its containers."""
        name = next(iter(parse_regions(str(ctx.settings.regions))))
        return name, ctx.containers.regions[name]

    def settled(self, ctx: Context) -> bool:
        """Replication runs both ways again (the mirrored views can complete)."""
        return replicating(ctx)

    def after(self, ctx: Context) -> None:
        """Note whether MirrorMaker's watchdog had to restart it."""
        restarts = mirrormaker_restarts(ctx) - self._restarts
        if restarts > 0:
            ctx.note(f"MirrorMaker stalled and its watchdog restarted it {restarts} time(s)")


@dataclass
class RegionOutage(RegionFault):
    """The home region's brokers and Redis go away (``how``: stop, pause or cut off the
    network), then come back; producers and workers must fail over and back."""

    how: ClassVar[str] = "stop"
    goal_strikes: ClassVar[tuple[int, ...] | None] = (0,)  # the goal is the failover's
    # The failback, from the first move home: the wait before it
    # (--region-failback-after-s) is served normally by the other region.
    label_goals: ClassVar[dict[str, float]] = {"failback": 30.0}

    def detection_s(self, ctx: Context) -> float:
        """Failover starts only once the region is declared down."""
        return ctx.settings.region_down_after_s

    def inject(self, ctx: Context) -> None:
        name, region = self.home(ctx)
        ctx.mark("failover")
        redis = ctx.containers.docker(str(region.redis)) if region.redis else None
        brokers = [ctx.containers.docker(cid) for cid in region.brokers.values()]
        if self.how == "stop":
            for c in [*([redis] if redis else []), *brokers]:
                c.stop(timeout=1)
        elif self.how == "pause":
            for c in [*([redis] if redis else []), *brokers]:
                pause(c)
        else:
            network = self._network(region)
            for c in brokers:
                network.disconnect(c)
            if redis is not None:
                pause(redis)
        ctx.note(f"region {name}: Kafka and Redis {self.how_done}")

    @property
    def how_done(self) -> str:
        """The fault, in the past tense."""
        return {"stop": "stopped", "pause": "paused"}.get(self.how, "cut off the network")

    def _network(self, region: Containers) -> Any:
        import docker

        return docker.from_env().networks.get(region.network)

    def heal(self, ctx: Context) -> None:
        name, region = self.home(ctx)
        # The failover is judged while the region is away; its restart (a broker's JVM
        # on a small machine) is a strike of its own, reported, not judged by the goal.
        ctx.mark("restore")
        started = time.monotonic()
        redis = ctx.containers.docker(str(region.redis)) if region.redis else None
        brokers = {node: ctx.containers.docker(cid) for node, cid in region.brokers.items()}
        if self.how == "stop":
            for c in [*([redis] if redis else []), *brokers.values()]:
                c.start()
        elif self.how == "pause":
            for c in [*([redis] if redis else []), *brokers.values()]:
                unpause(c)
        else:
            network = self._network(region)
            for node, c in brokers.items():
                network.connect(c, aliases=[f"{region.alias_prefix}kafka-{node}"])
            if redis is not None:
                unpause(redis)
        # The failback is measured from when the region answers again: a stopped broker
        # takes a while to come back, and meanwhile the other region serves.
        at = region_settings(ctx.settings, parse_regions(str(ctx.settings.regions))[name])
        wait_for(lambda: _answers(at), 180, f"region {name}'s Kafka to answer again")
        ctx.mark("failback")
        ctx.note(f"region {name} restored; its Kafka answered "
                 f"{time.monotonic() - started:.1f} s after the {self.how}'s end")

    def settled(self, ctx: Context) -> bool:
        """Producer and every worker are home again, and replication runs both ways."""
        name, _ = self.home(ctx)
        failover = ctx.load.failover
        if failover is None or failover.active != name:
            return False
        for i in ctx.fleet.procs:
            moves = SWITCH.findall(ctx.fleet.log_text(i))
            if moves and moves[-1][1] != name:
                return False
        return replicating(ctx)

    def remark(self, ctx: Context) -> None:
        """The failback strike begins at the first move home (the producer's or a
        worker's), not when the region answered again: until then the other region serves
        (the --region-failback-after-s hold-off, so that a flapping region does not move
        everyone twice), and a slow move is what the failback is judged by."""
        if "failback" not in ctx.labels or ctx.remarked:
            return
        i = ctx.labels.index("failback")
        answered_ms = ctx.marks[i]
        moves = [int(e.at * 1000) for e in (ctx.load.failover.events if ctx.load.failover
                                            else []) if e.kind == "failback"]
        moves += [ms for n in ctx.fleet.procs for ms in moves_home(ctx.fleet.log_text(n))]
        first = min((ms for ms in moves if ms >= answered_ms), default=None)
        if first is None:
            return
        ctx.marks[i], ctx.remarked = first, True
        ctx.note(f"first move home {(first - answered_ms) / 1000:.1f} s after the region "
                 f"answered again (--region-failback-after-s "
                 f"{ctx.settings.region_failback_after_s:.0f})")

    def evidence(self, ctx: Context) -> str | None:
        name, _ = self.home(ctx)
        kinds = {e.kind for e in (ctx.load.failover.events if ctx.load.failover else [])}
        if kinds != {"failover", "failback"}:
            return f"the producer did not fail over and back (its moves: {sorted(kinds)})"
        moved = [i for i in ctx.fleet.procs
                 if {k for k, _ in SWITCH.findall(ctx.fleet.log_text(i))} == {"failover",
                                                                              "failback"}]
        if not moved:
            return f"no worker failed over from {name} and back (see the worker logs)"
        ctx.note(f"producer and {len(moved)} worker(s) failed over and back")
        return None


@dataclass
class RegionStop(RegionOutage):
    """The home region stopped."""

    name: ClassVar[str] = "region-stop"
    summary: ClassVar[str] = "stop a whole region (Kafka and Redis), restart it"
    how: ClassVar[str] = "stop"


@dataclass
class RegionPause(RegionOutage):
    """The home region frozen: connections stay open and nothing answers."""

    name: ClassVar[str] = "region-pause"
    summary: ClassVar[str] = "pause a whole region (SIGSTOP its Kafka and Redis), resume it"
    how: ClassVar[str] = "pause"


@dataclass
class RegionCut(RegionOutage):
    """The home region's brokers off the network (clients and MirrorMaker lose them)."""

    name: ClassVar[str] = "region-cut"
    summary: ClassVar[str] = "cut a whole region off the network, reconnect it"
    how: ClassVar[str] = "cut"


@dataclass
class MirrorMakerKill(RegionFault):
    """SIGKILL MirrorMaker, start it again: serving goes on in each region; replication
    stops and must resume with nothing lost from the mirrored views."""

    name: ClassVar[str] = "mirrormaker-kill"
    summary: ClassVar[str] = "SIGKILL MirrorMaker, start it again"

    def inject(self, ctx: Context) -> None:
        ctx.containers.docker(str(ctx.containers.mirrormaker)).kill()
        self._killed_at = time.monotonic()
        ctx.note("killed MirrorMaker")

    def heal(self, ctx: Context) -> None:
        container = ctx.containers.docker(str(ctx.containers.mirrormaker))
        self._stopped = not replicating(ctx)
        container.reload()
        if container.status != "running":
            container.start()
        self._restarts = mirrormaker_restarts(ctx)  # a manual start resets Docker's count
        self._started_at = time.monotonic()
        self._resumed: float | None = None
        ctx.note("MirrorMaker started again")

    def settled(self, ctx: Context) -> bool:
        if not replicating(ctx):
            return False
        if self._resumed is None:
            self._resumed = time.monotonic() - self._started_at
            ctx.note(f"replication resumed both ways {self._resumed:.1f} s after the start")
        return True

    def evidence(self, ctx: Context) -> str | None:
        if not self._stopped:
            return "replication never stopped while MirrorMaker was killed (no effect seen)"
        return None
