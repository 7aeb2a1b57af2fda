"""The scenarios ``streaminfer chaos run`` knows, with their guarantees and goals.

Goals are the product's promises (issue 18): a partition-leader kill recovers within
10 s, a worker kill with a stable identity within 5 s, and a region failover within
10 s of its detection (``--region-down-after-s``); the other scenarios report
their recovery time and are judged on loss, duplicates and evidence of effect.
"""

from __future__ import annotations

from collections.abc import Callable

from stream.chaos.faults_kafka import (
    BrokerCut,
    BrokerPause,
    ControllerKill,
    LeaderKill,
    Netem,
    RollingRestart,
)
from stream.chaos.faults_redis import RedisCorrupt, RedisFailover, RedisKill, RedisPause
from stream.chaos.faults_regions import MirrorMakerKill, RegionCut, RegionPause, RegionStop
from stream.chaos.faults_workers import Overload, OverloadShed, WorkerKill, ZombieWorker
from stream.chaos.scenario import Scenario
from stream.chaos.strikes import GOALS
from stream.exceptions import ConfigurationError

EOS, ALO = "exactly-once", "at-least-once"

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "leader-kill": lambda: Scenario(LeaderKill(), EOS, goal_s=GOALS["leader-kill"]),
    "controller-kill": lambda: Scenario(ControllerKill(), EOS, goal_s=GOALS["controller-kill"]),
    "broker-pause": lambda: Scenario(BrokerPause(), EOS, goal_s=GOALS["broker-pause"]),
    "rolling-restart": lambda: Scenario(RollingRestart(), EOS, goal_s=GOALS["rolling-restart"]),
    "broker-cut": lambda: Scenario(BrokerCut(), EOS, goal_s=GOALS["broker-cut"]),
    "netem": lambda: Scenario(Netem(), ALO),
    "worker-kill": lambda: Scenario(WorkerKill(), EOS, goal_s=GOALS["worker-kill"]),
    "zombie-worker": lambda: Scenario(ZombieWorker(), EOS),
    "redis-kill": lambda: Scenario(RedisKill(), ALO),
    "redis-pause": lambda: Scenario(RedisPause(), ALO),
    "redis-corrupt": lambda: Scenario(RedisCorrupt(), ALO),
    "redis-failover": lambda: Scenario(RedisFailover(), ALO),
    "overload": lambda: Scenario(Overload(), ALO),
    "overload-shed": lambda: Scenario(OverloadShed(), ALO),
    # two regions (`dev up --regions 2`); regional workers run at-least-once
    "region-stop": lambda: Scenario(RegionStop(), ALO, goal_s=10.0),
    "region-pause": lambda: Scenario(RegionPause(), ALO, goal_s=10.0),
    "region-cut": lambda: Scenario(RegionCut(), ALO, goal_s=10.0),
    "mirrormaker-kill": lambda: Scenario(MirrorMakerKill(), ALO),
}
REGIONAL = ("region-stop", "region-pause", "region-cut", "mirrormaker-kill")
SINGLE_BROKER = ("netem", "worker-kill", "zombie-worker", "redis-kill", "redis-pause",
                 "redis-corrupt", "redis-failover", "overload", "overload-shed")


def scenarios(names: list[str]) -> list[Scenario]:
    """Fresh scenarios by name (``all``: every one); unknown names are an error."""
    if names in ([], ["all"]):
        names = list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ConfigurationError(f"unknown chaos scenario(s) {unknown}; known: "
                                 f"{', '.join(SCENARIOS)} (or all)")
    return [SCENARIOS[n]() for n in names]
