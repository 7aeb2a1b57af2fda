"""Model control on the secure stack (issue 34, item 7): the canary judge, running as the
`worker` principal, promotes a healthy canary and rolls back a broken one through the
control writers' fenced session; principals that may not decide are refused with the
reason. (The judge on the open stack: test_canary_shadow.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.exceptions import KafkaOperationError
from stream.lifecycle.control import change, current_state, publish_control
from tests.integration.conftest import Stack
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    run_in_thread,
    start_collector,
    streaminfer,
    wait_for_all,
    wait_for_workers,
    wait_until,
)
from tests.integration.test_canary_shadow import garbage_model, registry_with

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stack", ["secure"], indirect=True)
def test_the_canary_judge_promotes_and_rolls_back_on_the_secure_stack(
        stack: Stack, workers: WorkerPool, tmp_path: Path) -> None:
    from processors.model import DEFAULT_MODEL_DIR

    root = registry_with(tmp_path, {"2": DEFAULT_MODEL_DIR, "3": garbage_model(tmp_path)})
    admin = stack.settings(registry_model="fraud", registry_dir=root, canary_min_samples=100,
                           canary_window_s=20, canary_promote_after_s=4)
    release = stack.acting_as(admin, "release")
    publish_control(release, "fraud", "1", "promote", actor="release-test")
    for principal in ("producer", "consumer", "dlq-operator", "features"):
        with pytest.raises(KafkaOperationError, match="may not write the control topic"):
            change(stack.acting_as(admin, principal), "fraud", "canary", version="2",
                   share=0.5)
    worker = stack.acting_as(admin, "worker")
    workers.start(worker, "judge0", health_port=0)
    wait_for_workers(admin, workers, 1)
    collector = start_collector(stack.acting_as(admin, "consumer"))
    load = PacedProducer(stack.acting_as(admin, "producer"), 40_000, 300.0, seed=77)
    load.start()
    try:
        out = streaminfer(release, "models", "canary", "fraud", "2", "--share", "0.5",
                          timeout=60)
        assert out.returncode == 0, out.stderr
        wait_until(lambda: (current_state(admin, "fraud") or {}).get("active_version") == "2",
                   90, "the judge (as `worker`) promoting the healthy canary v2")
        promoted = current_state(admin, "fraud")
        assert promoted is not None
        assert promoted["action"] == "auto_promote"
        assert promoted["actor"] == "canary-judge@judge0"
        out = streaminfer(release, "models", "canary", "fraud", "3", "--share", "0.5",
                          timeout=60)
        assert out.returncode == 0, out.stderr
        wait_until(lambda: (current_state(admin, "fraud") or {}).get("action")
                   == "auto_rollback", 90, "the judge rolling back the broken canary v3")
        rolled = current_state(admin, "fraud")
        assert rolled is not None
        assert rolled["active_version"] == "2"
        assert rolled["canary_version"] is None
        assert rolled["seq"] == promoted["seq"] + 2  # canary v3, then its rollback
    finally:
        load.halt.set()
        load.join(60)
    assert load.error is None
    wait_for_all(collector, load.ids, deadline_s=120)
    log = workers.started[0].log()
    assert "could not write the canary" not in log
    assert "written (seq" in log


@pytest.mark.parametrize("stack", ["secure"], indirect=True)
def test_the_dlq_operator_inspects_and_replays_as_documented(stack: Stack) -> None:
    """Issue 34, item 14: `dlq inspect` and `dlq replay` run as `dlq-operator` printed
    "scanned 0 dead letters" and exited 0 while the DLQ held dead letters; a principal
    that may not read the DLQ is refused, with what was refused."""
    from stream.clients import RequestProducer

    admin = stack.settings()
    with RequestProducer(stack.acting_as(admin, "producer")) as producer:
        for i in range(3):
            producer.send_raw(f"k{i}".encode(), b"\x00garbage %d" % i)
    from stream.worker.loop import Worker

    worker = Worker(stack.acting_as(admin, "worker"), worker_id="dlq0")
    thread = run_in_thread(worker)
    try:
        wait_until(lambda: worker.stats.dead_letters >= 3, 60, "three dead letters")
    finally:
        worker.stop_event.set()
        thread.join(30)
    operator = stack.acting_as(admin, "dlq-operator")
    inspected = streaminfer(operator, "dlq", "inspect", timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    assert "decode" in inspected.stdout, inspected.stdout
    replayed = streaminfer(operator, "dlq", "replay", "--stage", "decode", "--dry-run",
                           timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert "scanned 3 dead letters" in replayed.stderr + replayed.stdout
    refused = streaminfer(stack.acting_as(admin, "consumer"), "dlq", "inspect", timeout=60)
    assert refused.returncode != 0
    assert f"topic {admin.dlq_topic} does not exist" in refused.stderr, refused.stderr
    assert "or principal 'consumer' may not describe it" in refused.stderr


@pytest.mark.parametrize("stack", ["secure"], indirect=True)
def test_the_keda_principal_reads_the_lag_and_nothing_else(stack: Stack) -> None:
    """Issue 34, item 11: KEDA's scaler had no principal on a secure cluster, so the lag
    read failed and the fallback pinned the maximum. As `keda` it reads the group's
    committed offsets and the end offsets (what `worker --autoscale` and KEDA read), and
    may not read a request or join the group."""
    from confluent_kafka import KafkaException

    from stream.clients import RequestProducer, synthetic_requests
    from stream.worker.autoscale import GroupLag

    admin = stack.settings()
    with RequestProducer(stack.acting_as(admin, "producer")) as producer:
        for request in synthetic_requests(40, seed=5):
            producer.send(request)
    keda = stack.acting_as(admin, "keda")
    reader = GroupLag(keda)
    try:
        lag, partitions = reader.read()
    finally:
        reader.close()
    assert (lag, partitions) == (40, admin.partitions)
    from tests.integration.test_secure_stack import _consume_error, _denied

    assert _denied(_consume_error(keda, admin.requests_topic, admin.group))
    other = GroupLag(stack.acting_as(admin.model_copy(update={"group_id": "someone"}), "keda"))
    try:
        with pytest.raises(KafkaException):
            other.read(timeout_s=5)
    finally:
        other.close()
