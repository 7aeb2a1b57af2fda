"""Chaos scenarios on one cluster (the full matrix: `streaminfer chaos run`).

Each runs the product's own scenario code (stream.chaos) against real Kafka and Redis
(all of them with `bash compose/test.sh --extended`; the test command keeps the
three-broker RF 3 / min ISR 2 check and a short seeded soak, both on three secure
brokers, and region-stop in test_chaos_regions.py):
steady open-loop load, the fault, recovery, then the shared outcome checker. Recovery
goals are printed, not enforced here (machines differ; `chaos run` enforces them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.chaos.faults_kafka import BrokerCut, LeaderKill, Netem
from stream.chaos.faults_redis import RedisCorrupt
from stream.chaos.faults_workers import ZombieWorker
from stream.chaos.report import soak_table, table
from stream.chaos.scenario import Plan, Result, Scenario, run_scenario
from stream.chaos.schedule import draw
from stream.chaos.soak import SoakPlan, run_soak
from stream.chaos.target import Containers
from stream.connect import kafka_config
from stream.connect.topics import ensure_topics, wait_for_leaders
from stream.devcluster.cluster import RunningCluster, start_cluster
from stream.devcluster.secure import SecureStack
from stream.devcluster.state import ensure_field_keys, ensure_sealed_model
from stream.settings import Settings
from tests.integration.conftest import Endpoints, ensure_test_images, make_settings
from tests.integration.secure_support import SecureCluster

pytestmark = pytest.mark.integration

PLAN = Plan(rate=50.0, workers=2, warmup_s=3.0, after_s=4.0, drain_s=90.0, enforce_goals=False)


# Single-broker scenarios first, before the module's three brokers exist (their JVMs
# would compete for the two cores), then the three-broker ones; the leader kill last.
@pytest.mark.extended  # 44 s; fencing stays covered by test_exactly_once.py
def test_a_zombie_worker_is_fenced(cluster: Endpoints, tmp_path: Path) -> None:
    # Transaction timeout = session timeout: the zombie sleeps past both in 9 s.
    settings = make_settings(cluster, transaction_timeout_ms=6000, session_timeout_ms=6000)
    ensure_topics(settings)
    result = run_scenario(settings, Containers(), Scenario(ZombieWorker(), "exactly-once"),
                          PLAN, tmp_path)
    judged(result)
    zombie_log = next(tmp_path.rglob("chaos-0.log")).read_text()
    # It woke up to a group that had moved on: its partitions were taken from it (and a
    # transaction it still held, refused); nothing of it is visible (no duplicate above).
    assert any(sign in zombie_log for sign in ("partitions lost", "ILLEGAL_GENERATION",
                                               "FENCED", "UNKNOWN_MEMBER_ID")), zombie_log[-3000:]


@pytest.mark.extended  # 25 s; corrupt stored features stay covered by test_features.py
def test_redis_fed_corrupt_feature_values(settings: Settings, tmp_path: Path) -> None:
    fault = RedisCorrupt(hold_s=5.0)
    result = run_scenario(settings, Containers(), Scenario(fault, "at-least-once"), PLAN,
                          tmp_path)
    judged(result, guarantee_dups_allowed=True)


@pytest.fixture(scope="module")
def three() -> Iterator[RunningCluster]:
    images = ensure_test_images()
    running = start_cluster(3, images.kafka, images.redis)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def production() -> Iterator[SecureCluster]:
    """Three secure brokers (SASL_SSL, ACLs; TLS-only Redis with ACL users): the shape
    the test command's soak runs on."""
    images = ensure_test_images()
    root = Path(tempfile.mkdtemp(prefix="streaminfer-production-"))
    stack = SecureStack.create(root / "secure", "streaminfer")
    secure = SecureCluster(start_cluster(3, images.kafka, images.redis, secure=stack), stack)
    try:
        yield secure
    finally:
        secure.stop()


def production_settings(production: SecureCluster, **overrides: object) -> Settings:
    """A fresh namespace on the secure three brokers, acting as admin."""
    running = production.running
    base = make_settings(Endpoints(running.bootstrap_servers, running.redis_url, 3),
                         replication_factor=3, min_insync_replicas=2, **overrides)
    return production.as_principal(base, "admin")


def production_target(production: SecureCluster) -> Containers:
    """The secure cluster's containers and material (chaos runs act as its principals)."""
    target = Containers.from_running(production.running)
    target.secure_dir = str(production.stack.material.root)
    return target


def rf3(three: RunningCluster) -> Settings:
    return make_settings(Endpoints(three.bootstrap_servers, three.redis_url, 3),
                         replication_factor=3, min_insync_replicas=2)


def judged(result: Result, guarantee_dups_allowed: bool = False) -> None:
    print("\n" + table([result], title=result.scenario))
    assert result.lost == 0, result.problems
    if not guarantee_dups_allowed:
        assert result.duplicates == 0, result.problems
    assert result.figures is not None
    assert result.figures.recovery_s is not None, result.problems
    assert result.ok, result.problems


def test_three_broker_topics_are_rf3_with_min_isr_2(production: SecureCluster) -> None:
    settings = production_settings(production)
    states = ensure_topics(settings)
    assert {t.replication_factor for t in states} == {3}
    admin = AdminClient(kafka_config.admin(settings))
    # This client may ask a broker that has not applied the new topic's metadata yet.
    wait_for_leaders(admin, [settings.requests_topic], 30)
    meta = admin.list_topics(timeout=10).topics[settings.requests_topic]
    assert all(len(p.replicas) == 3 for p in meta.partitions.values())
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.requests_topic)
    assert admin.describe_configs([res])[res].result(10)["min.insync.replicas"].value == "2"


@pytest.mark.extended  # 48 s
def test_a_broker_cut_off_the_network(three: RunningCluster, tmp_path: Path) -> None:
    result = run_scenario(rf3(three), Containers.from_running(three),
                          Scenario(BrokerCut(hold_s=8.0), "exactly-once"), PLAN, tmp_path)
    judged(result)
    assert any("reconnected and back in sync" in n for n in result.notes)


@pytest.mark.extended
def test_latency_and_loss_on_the_path_to_a_broker(three: RunningCluster, tmp_path: Path) -> None:
    """tc netem where the kernel has it, else Toxiproxy in the broker's namespace."""
    result = run_scenario(rf3(three), Containers.from_running(three),
                          Scenario(Netem(hold_s=8.0), "at-least-once"), PLAN, tmp_path)
    judged(result, guarantee_dups_allowed=True)
    assert any("+100±20 ms, 5% loss" in n for n in result.notes), result.notes
    # the requests sent during the fault were slower than before it
    assert result.figures is not None
    assert result.figures.p99_during_ms is not None
    assert result.figures.p99_before_ms is not None
    assert result.figures.p99_during_ms > result.figures.p99_before_ms


@pytest.mark.extended  # about 60 s: `bash compose/test.sh --extended` (the test command's budget)
def test_partition_leader_kill_under_exactly_once(three: RunningCluster, tmp_path: Path) -> None:
    fault = LeaderKill(hold_s=2.0, times=1)
    result = run_scenario(rf3(three), Containers.from_running(three),
                          Scenario(fault, "exactly-once", goal_s=10.0), PLAN, tmp_path)
    judged(result)
    assert any("killed broker" in n for n in result.notes)


def test_a_short_seeded_soak_on_three_secure_brokers(production: SecureCluster,
                                                     tmp_path: Path) -> None:
    """The test command's chaos subset: one fleet of exactly-once workers, acting as the
    worker principal on three secure brokers, takes a seeded schedule of faults (a frozen
    worker, a worker kill, a kill of the active KRaft controller, found over the
    controller listener's mutual TLS) under steady load whose sensitive features the
    producer seals and the workers must find sealed, while a canary is started and
    promoted and a retraining run (on inputs recorded with their sensitive features sealed)
    is released; every request is accounted for over the whole run, answered by the model
    (none dead-lettered), and every answer's version was active or canary at its time
    (`chaos soak` runs the 30-minute one against `dev up --profile production`)."""
    keys = ensure_field_keys(production.stack.material.root)
    model = ensure_sealed_model(production.stack.material.root)  # declares sensitive features
    plan = SoakPlan(duration_s=70, seed=127, rate=50.0, workers=2, warmup_s=3.0,
                    gap_s=(3.0, 6.0), combination_share=0.0, strike_s=20.0, after_s=4.0,
                    drain_s=90.0,
                    faults=("worker-kill", "controller-kill", "zombie-worker"),
                    enforce_goals=False)
    schedule = [s.faults for s in draw(127, 70, list(plan.faults), plan.gap_s, 0.0, 20.0)]
    assert sorted(schedule) == [("controller-kill",), ("worker-kill",), ("zombie-worker",)]
    settings = production_settings(production, field_keys_file=str(keys), require_sealed=True,
                                   model_path=model)
    result = run_soak(settings, production_target(production), plan, tmp_path)
    print("\n" + soak_table(result))
    assert result.requests > 0
    assert result.lost == 0, result.problems
    assert result.duplicates == 0, result.problems
    assert result.outcomes["sealed"] == result.requests, result.outcomes
    assert result.outcomes["dead"] == 0, result.outcomes
    assert result.outcomes["model"] > 0, result.outcomes
    assert [r.strike.faults for r in result.strikes] == schedule
    assert all(r.figures is not None and r.figures.recovery_s is not None
               for r in result.strikes), [r.problems for r in result.strikes]
    assert result.ok, (result.problems, [r.problems for r in result.strikes])
    assert any("active controller" in n for r in result.strikes for n in r.notes)
    # each strike's seconds, from 5 s before it, go to the JSON report
    assert all(r.seconds and r.seconds[0]["s"] == -5 and r.as_dict()["seconds"] == r.seconds
               for r in result.strikes)
    zombie = next(r for r in result.strikes if r.strike.faults == ("zombie-worker",))
    assert [n.split(" ")[0] for n in result.releases][:2] == ["canary", "promoted"], (
        result.releases)
    # The retraining run trains on the recorded inputs, whose sensitive features the
    # workers sealed into each snapshot and the retraining job opened with the key ring.
    assert "retraining release" not in result.skipped, result.skipped
    assert any("retraining run" in n and "canary" in n for n in result.releases), (
        result.releases)
    resumed = "every request sent in the second after it was answered"
    assert any(resumed in n for n in zombie.notes), zombie.notes

