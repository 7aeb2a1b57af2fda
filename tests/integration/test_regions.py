"""Two regions with a real MirrorMaker 2 between them: the namespace's topics replicate."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from confluent_kafka import Consumer

from schemas.serde import Decoder
from stream.connect import kafka_config
from stream.devcluster.regions import RunningRegions
from stream.lifecycle.control import current_state, publish_control
from stream.settings import Settings
from tests.integration.conftest import ensure_test_images
from tests.integration.helpers import produce_all, wait_until
from tests.integration.regions_support import both_regions, count

pytestmark = pytest.mark.integration


def request_ids(settings: Settings, topic: str, n: int) -> set[str]:
    decode = Decoder("InferenceRequest")
    consumer = Consumer({**kafka_config.common(settings), "group.id": f"rg-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    ids: set[str] = set()
    end = time.monotonic() + 30
    while len(ids) < n and time.monotonic() < end:
        for msg in consumer.consume(500, 0.5):
            if msg.error() is None:
                ids.add(decode(msg.value() or b"")["request_id"])
    consumer.close()
    return ids


# `--extended` (48 s): in the test command, test_chaos_regions.py checks replication both
# ways (each region's view complete after region-stop), the model control topic mirrored
# and `regions status`; this one adds request-level checks and `produce --regions`.
@pytest.mark.extended
def test_mirrormaker_replicates_requests_and_model_control_both_ways_then_produce_fails_over(
        regions: tuple[RunningRegions, str]) -> None:
    """Replication both ways; then, on the same two regions (a second pair costs 15 s of
    the test command's budget), east goes down and `produce --regions` moves to west."""
    running, ns = regions
    east, west, spec = both_regions(running, ns)
    sent = produce_all(east, 500, seed=61)
    publish_control(east, "fraud", "2", "promote", actor="test")
    back = produce_all(west, 100, seed=62)

    mirrored = f"east.{ns}.requests"
    try:
        wait_until(lambda: count(west, mirrored) >= 500, 120,
                   f"{mirrored} on west to hold the 500 requests", interval=1.0)
        wait_until(lambda: count(east, f"west.{ns}.requests") >= 100, 60,
                   f"west.{ns}.requests on east", interval=1.0)
    except AssertionError:
        print(running.logs(80))
        raise
    assert request_ids(west, mirrored, 500) == set(sent)  # the same records, in the other region
    assert request_ids(east, f"west.{ns}.requests", 100) == set(back)
    # The model control topic replicates too: west can see east's desired state.
    mirrored_control = west.model_copy(update={"namespace": f"east.{ns}"})
    wait_until(lambda: count(west, f"east.{ns}.models") >= 1, 60, "the mirrored control topic",
               interval=1.0)
    state = current_state(mirrored_control, "fraud")
    assert state is not None
    assert state["active_version"] == "2"
    # Replication never loops: west does not mirror east's copies back to east.
    assert count(east, f"west.east.{ns}.requests") == 0

    # regions status: both reachable, replication lag from MirrorMaker's heartbeats.
    import json
    import subprocess
    import sys

    from stream.settings import to_env

    report: dict[str, dict[str, Any]] = {}

    def lags_known() -> bool:
        done = subprocess.run([sys.executable, "-m", "stream.cli.main", "regions", "status",
                               "--json"], env=to_env(east, regions=spec), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        report.update({r["region"]: r for r in json.loads(done.stdout)["regions"]})
        return all(None not in r["replication_lag_ms"].values()
                   for r in report.values())

    # Heartbeats replicate like any topic: MirrorMaker picks the topic up at its next refresh.
    wait_until(lags_known, 60, "MirrorMaker heartbeats replicated both ways", interval=2.0)
    assert report["east"]["reachable"]
    assert report["west"]["reachable"]
    assert f"east.{ns}.requests" in report["west"]["mirrored_topics"]
    lag_into_west = report["west"]["replication_lag_ms"]["east"]
    lag_into_east = report["east"]["replication_lag_ms"]["west"]
    print(f"\nreplication lag east->west {lag_into_west} ms, west->east {lag_into_east} ms")
    assert lag_into_west is not None
    assert 0 <= lag_into_west < 30_000
    assert lag_into_east is not None
    assert 0 <= lag_into_east < 30_000
    produce_command_reports_where_requests_went(running, ns)


def all_ids(settings: Settings, topic: str) -> set[str]:
    return request_ids(settings, topic, count(settings, topic))


# `--extended`: the chaos scenario region-stop (test_chaos_regions.py, in the test command)
# runs the same producer through a region outage and back and checks every acknowledged
# request answered; this one adds 1,000 requests/s and the producer's own counters.
@pytest.mark.extended
def test_producer_fails_over_to_west_and_back_without_losing_an_acknowledged_request(
        regions: tuple[RunningRegions, str]) -> None:
    from stream.clients import synthetic_requests
    from stream.regions.failover import FailoverProducer

    running, ns = regions
    east, west, spec = both_regions(running, ns)
    producer = FailoverProducer(east.model_copy(update={
        "regions": spec, "region_down_after_s": 3.0, "region_failback_after_s": 2.0}))
    broker = running.clusters["east"].kafka[1].get_wrapped_container()
    requests = list(synthetic_requests(3000, seed=63))
    for i, request in enumerate(requests):
        if i == 1000:
            broker.stop(timeout=1)  # east goes down mid-stream (container kept)
        if i == 2000:
            broker.start()  # and comes back
        producer.send(request)
        time.sleep(0.002)
    producer.flush(60)
    producer.close()
    kinds = [(e.kind, e.source, e.target) for e in producer.events]
    print(f"\nacknowledged per region: {dict(producer.acked)}; re-sent: {producer.resent}; "
          f"events: {kinds}")
    assert ("failover", "east", "west") in kinds
    assert producer.acked["east"] > 0
    assert producer.acked["west"] > 0
    assert sum(producer.acked.values()) == 3000  # every request acknowledged by some region
    assert producer.tracked == 0  # nothing held once all are acknowledged
    wait_until(lambda: count(east, east.requests_topic) >= producer.acked["east"], 60,
               "east to answer metadata again", interval=1.0)
    stored = all_ids(east, east.requests_topic) | all_ids(west, west.requests_topic)
    assert {r["request_id"] for r in requests} <= stored  # nothing acknowledged was lost


def produce_command_reports_where_requests_went(running: RunningRegions, ns: str) -> None:
    """East stopped: `produce --regions` fails over and says where its requests went."""
    import subprocess
    import sys

    from stream.settings import to_env

    east, west, spec = both_regions(running, ns)
    before = count(west, west.requests_topic)
    running.clusters["east"].kafka[1].get_wrapped_container().stop(timeout=1)  # east is down
    env = to_env(east, regions=spec, region_down_after_s=2.0, region_failback_after_s=600.0)
    done = subprocess.run([sys.executable, "-m", "stream.cli.main", "produce", "--count", "200",
                           "--seed", "5"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "acknowledged by west 200" in done.stderr
    assert "failover east->west" in done.stderr
    assert count(west, west.requests_topic) == before + 200


@pytest.mark.extended  # `dev up --regions 2` end to end (36 s): `bash compose/test.sh --extended`
def test_dev_up_regions_2_records_both_regions_and_mirrormaker(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    ensure_test_images()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMINFER_")}
    env["STREAMINFER_HOME"] = str(tmp_path)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "stream.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=300)
        if check:
            assert done.returncode == 0, done.stderr[-3000:]
        return done

    try:
        up = run("dev", "up", "--regions", "2")
        assert "MirrorMaker 2 replicates" in up.stderr
        dev_env = (tmp_path / "dev.env").read_text()
        assert "STREAMINFER_REGIONS='east=127.0.0.1:" in dev_env
        assert ";west=127.0.0.1:" in dev_env
        assert "STREAMINFER_REGION_REDIS='east=redis://" in dev_env
        status = run("dev", "status")
        assert "mirrormaker" in status.stdout
        assert "region west" in status.stdout
        assert status.stdout.count("running") >= 5  # 2 brokers, 2 Redis, MirrorMaker
        assert "already running" in run("dev", "up", "--regions", "2").stderr
        recorded = json.loads((tmp_path / "dev.json").read_text())["containers"]
        client = docker.from_env()
        named = [client.containers.get(cid).name for cid in recorded.values()]
        assert all(n.startswith("streaminfer-dev-") for n in named), named
        assert any(n.endswith("-east-kafka-1") for n in named), named
        assert any(n.endswith("-mirrormaker") for n in named), named

        def lag_known() -> bool:
            done = run("regions", "status", "--json", check=False)
            if done.returncode != 0:
                return False
            rows = json.loads(done.stdout)["regions"]
            return all(None not in r["replication_lag_ms"].values() for r in rows)

        wait_until(lag_known, 90, "heartbeats replicated both ways", interval=2.0)
    finally:
        down = run("dev", "down", check=False)
    assert down.returncode == 0
    assert "dev cluster removed" in down.stdout
    assert "removed mirrormaker" in down.stderr


@pytest.mark.extended  # RF 3 itself is in the default suite (test_replication.py)
def test_three_brokers_per_region_replicate_with_rf_3_both_ways() -> None:
    from confluent_kafka.admin import AdminClient

    from stream.devcluster.images import ensure_mirrormaker_image
    from stream.devcluster.regions import start_regions
    from tests.integration.regions_support import region_settings

    images = ensure_test_images()
    ns = f"rg3-{uuid.uuid4().hex[:8]}"
    running = start_regions(3, images.kafka, images.redis, ensure_mirrormaker_image(), ns)
    try:
        east, west = (region_settings(running, r, ns).model_copy(update={
            "replication_factor": 3, "min_insync_replicas": 2}) for r in ("east", "west"))
        from stream.connect.topics import ensure_topics

        ensure_topics(east)
        ensure_topics(west)
        sent = produce_all(east, 300, seed=64)
        mirrored = f"east.{ns}.requests"
        wait_until(lambda: count(west, mirrored) >= 300, 120, f"{mirrored} on west", 1.0)
        assert request_ids(west, mirrored, 300) == set(sent)
        admin = AdminClient(kafka_config.admin(west))
        meta = admin.list_topics(timeout=10).topics
        for topic in (west.requests_topic, mirrored):  # local and mirrored: RF 3 in west
            replicas = {len(p.replicas) for p in meta[topic].partitions.values()}
            assert replicas == {3}, (topic, replicas)
        assert len(admin.list_topics(timeout=10).brokers) == 3
    finally:
        running.stop()
