"""A worker SIGKILLed and restarted at once under steady load resumes within seconds.

Before the fix an exactly-once worker came back under a new transactional id, so its
predecessor's open transaction held back read_committed readers until the transaction
timeout (35 s measured at 400 requests/s with the default 30 s timeout), and any worker
waited for the session timeout before the group gave its partitions back. Now the
transactional id and the static group membership derive from the stable --worker-id.
"""

from __future__ import annotations

import pytest

from processors.outcomes import check
from stream.clients import now_ms
from stream.connect.topics import ensure_topics
from tests.integration.conftest import Endpoints, Stack, make_settings
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration

COUNT = 3200
RATE = 400.0


# at-least-once in --extended (the test command's budget); exactly-once is the stricter case.
# The open stack's case in --extended too (13 s): the secure case is the same run plus the
# worker principal's ACLs; exactly-once under SIGKILL on the open stack stays in the test
# command through the chaos leader kill and test_exactly_once.py's fencing.
@pytest.mark.parametrize("guarantee", ["exactly-once",
                                       pytest.param("at-least-once", marks=pytest.mark.extended)])
@pytest.mark.parametrize("stack", ["secure", pytest.param("open", marks=pytest.mark.extended)],
                         indirect=True)
def test_sigkill_and_immediate_restart_flows_again_within_seconds(
        stack: Stack, workers: WorkerPool, guarantee: str) -> None:
    # The product's defaults (30 s transaction timeout, 10 s session timeout), not the
    # suite's shortened ones: the stall they would cause is what this test rules out.
    # On the secure stack too: the worker principal's transactional id and group ACLs.
    settings = stack.settings(guarantee=guarantee, transaction_timeout_ms=30_000,
                              session_timeout_ms=10_000)
    collector = start_collector(settings)
    worker = stack.acting_as(settings, "worker")
    first = workers.start(worker, "rs0")
    wait_for_workers(settings, workers, 1)
    producer = PacedProducer(stack.acting_as(settings, "producer"), COUNT, RATE, seed=57)
    producer.start()

    def answered() -> int:
        with collector.lock:
            return len(collector.seen)

    wait_until(lambda: answered() > 600, 60, "the worker answering under load")
    killed_at = now_ms()
    first.kill()
    workers.start(worker, "rs0")  # the same identity, at once
    restarted_at = now_ms()

    def first_new() -> int | None:
        with collector.lock:
            times = [received for topic, v, received in collector.seen
                     if topic == settings.predictions_topic and v["predicted_at"] >= restarted_at]
        return min(times) if times else None

    wait_until(lambda: first_new() is not None, 60, "predictions from the restarted worker")
    resumed = first_new()
    assert resumed is not None
    gap_s = (resumed - killed_at) / 1000
    print(f"\n{guarantee}: SIGKILL + restart -> predictions visible (read_committed) again "
          f"after {gap_s:.1f} s (transaction timeout 30 s, session timeout 10 s)")
    # Goal: under 5 s (2.0 s exactly-once, 1.1 s at-least-once measured here, including
    # the new process's start). The bound leaves room for slower machines and still
    # fails without the fix: ~35 s (transaction timeout) and ~11 s (session timeout).
    assert gap_s < 7.0, f"{guarantee}: nothing visible for {gap_s:.1f} s after the restart"

    producer.join(60)
    assert producer.error is None, producer.error
    tally = wait_for_all(collector, producer.ids, deadline_s=120)
    collector.stop.set()
    assert tally.predicted() == set(producer.ids)
    with collector.lock:
        preds = [v for t, v, _r in collector.seen if t == settings.predictions_topic]
        letters = [v for t, v, _r in collector.seen if t == settings.dlq_topic]
    report = check(producer.ids, preds, letters)
    assert report.ok(allow_duplicates=guarantee == "at-least-once"), report.summary()
    if guarantee == "exactly-once":
        assert tally.duplicates == 0


@pytest.mark.extended  # 10 s: `bash compose/test.sh --extended` (the test command's budget)
def test_two_workers_with_one_id_end_with_an_error_naming_it(
        cluster: Endpoints, workers: WorkerPool) -> None:
    settings = make_settings(cluster)
    ensure_topics(settings)
    first = workers.start(settings, "twin")
    wait_for_workers(settings, workers, 1)
    second = workers.start(settings, "twin")  # the same static identity: they fence
    wait_until(lambda: first.proc.poll() is not None or second.proc.poll() is not None, 120,
               "one of the two workers with the same id to give up")
    quitter = first if first.proc.poll() is not None else second
    quitter.expected_alive = False
    assert quitter.proc.returncode != 0
    assert "give each worker its own id" in quitter.log(), quitter.log()[-2000:]


@pytest.mark.extended  # 17-19 s; the SIGKILL-restart test above restarts a static member too
def test_restarting_one_static_member_leaves_the_others_partitions_alone(
        cluster: Endpoints, workers: WorkerPool) -> None:
    """A rolling restart's step: with static membership (--worker-id), a member that stops
    (SIGTERM) and comes back within the session timeout gets its own partitions back and
    the other members see no rebalance at all (no revoke, no assign). Without static
    membership the same restart moves partitions to the others and back."""
    import time

    from stream.observability.status import members as group_members
    from tests.integration.helpers import log_events

    settings = make_settings(cluster, partitions=6, session_timeout_ms=10_000)
    ensure_topics(settings)
    collector = start_collector(settings)
    members = [workers.start(settings, f"sm{i}") for i in range(3)]
    wait_for_workers(settings, workers, 3)
    producer = PacedProducer(settings, 1600, 200.0, seed=58)
    producer.start()
    wait_until(lambda: len(collector.seen) > 300, 60, "the workers answering under load")

    def assignment() -> dict[str, list[int]]:
        return {client: parts for client, _host, parts in group_members(settings)[1]}

    before = assignment()
    restarted_at = time.time()
    assert members[1].terminate(30) == 0
    again = workers.start(settings, "sm1")
    wait_until(lambda: any(e["event"] == "assign" and e["at"] >= restarted_at
                           for e in log_events(again.log_path, "rebalance")),
               30, "the restarted member to get its partitions back", interval=0.3)
    producer.join(60)
    assert producer.error is None, producer.error
    tally = wait_for_all(collector, producer.ids, deadline_s=120)
    for other in (members[0], members[2]):
        moved = [e for e in log_events(other.log_path, "rebalance") if e["at"] >= restarted_at]
        assert not moved, f"{other.worker_id} saw a rebalance: {moved}"
    assert assignment() == before, "the partitions moved"
    assert tally.predicted() == set(producer.ids)
    print(f"\nstatic member restarted: the other two members kept {before} untouched")
