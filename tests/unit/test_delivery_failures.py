"""Every failure point of both deliveries, as a table (issue 34, item 1).

Each row injects one failure into a run of both guarantees over a partition of
``N`` records, driven the way the worker loop drives them: consume from the position,
answer, hand to the delivery, follow its rewinds; a delivery call that raises ends the
process, and its successor starts from the committed offset. Whatever fails, the run must
end with every record answered (exactly once under exactly-once), and at no point may
the committed offset pass a record that is not answered durably.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, KafkaException

from processors.records import BatchResult, Outbound
from stream.settings import Settings
from stream.worker.at_least_once import AtLeastOnce
from stream.worker.delivery import Delivery, DeliveryContext, seek_took
from stream.worker.exactly_once import ExactlyOnce
from stream.worker.poison import PoisonLedger
from stream.worker.stats import WorkerStats
from tests.fakes import FakeClients, FakeMessage, FakeProducer

N = 11  # records in the partition
BATCH = 3
TOPIC = "t.requests"

FATAL = KafkaError(KafkaError._FATAL, "fatal", fatal=True)
FENCED = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
STATE = KafkaError(KafkaError._STATE, "state")
ABORTABLE = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)
GONE = KafkaError(KafkaError._TRANSPORT, "gone")
MSG_TIMED_OUT = KafkaError(KafkaError._MSG_TIMED_OUT, "timed out", retriable=True)
TOO_LARGE = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")


@dataclass
class Run:
    """One worker life after another over the fakes; what became durable, in order."""

    clients: FakeClients
    settings: Settings
    durable: list[int]
    poison: PoisonLedger
    stats: WorkerStats

    def committed(self) -> int:
        """The group's committed offset of partition 0 (0 when none)."""
        if self.settings.guarantee == "exactly-once":
            return self.clients.committed_offsets.get((TOPIC, 0), 0)
        assert self.clients.consumer is not None
        offsets = [o for commit, _a in self.clients.consumer.commits for _t, _p, o in commit]
        return max(offsets, default=0)

    def delivery(self) -> Delivery:
        ctx = DeliveryContext(self.settings, self.clients, self.poison, self.stats,
                              lambda records, _r: self.durable.extend(
                                  m.offset() or 0 for m in records),
                              lambda _s, _t: None, lambda: None)
        if self.settings.guarantee == "exactly-once":
            return ExactlyOnce(ctx)
        return AtLeastOnce(ctx)

    def outcomes(self) -> list[bytes]:
        """The outcomes Kafka holds durably (exactly-once: in committed transactions)."""
        if self.settings.guarantee == "exactly-once":
            values = self.clients.committed_values
        else:
            values = [v for p in self.clients.producers for v in p.delivered]
        return [v for v in values if v is not None]

    def answered(self, offset: int) -> int:
        """How many outcomes answer the record at ``offset`` (a prediction or a dead letter)."""
        return sum(1 for v in self.outcomes()
                   if v == f"r{offset}".encode() or v.startswith(f"dead r{offset} ".encode()))


def answers(first: int, n: int, poison: PoisonLedger) -> tuple[list[FakeMessage], BatchResult]:
    """Records ``first``..``first+n-1`` answered like the loop answers them: predictions,
    or dead letters where the poison ledger says Kafka refused the outcome for good."""
    records = [FakeMessage(f"r{o}".encode(), _partition=0, _offset=o)
               for o in range(first, first + n)]
    outbound = [Outbound("t.predictions", None, f"r{o}".encode(), [], "model",
                         f"r{o}") for o in range(first, first + n)]

    def dead_letter(msg: object, exc: Exception, rid: str | None) -> Outbound:
        return Outbound("t.dlq", None, f"dead {rid} {exc}".encode(), [], "dead_letter", rid,
                        "produce")

    return records, poison.apply(records, BatchResult(outbound, n, 0, 0), dead_letter)


def drive(guarantee: str, inject: Callable[[Run], None]) -> Run:
    clients = FakeClients(FakeProducer())
    run = Run(clients, Settings(guarantee=guarantee, commit_interval_ms=0),
              [], PoisonLedger(), WorkerStats())
    inject(run)
    delivery, position, lives = run.delivery(), 0, 1
    for _step in range(80):
        consumer = clients.consumer
        assert consumer is not None
        seeks = len(consumer.seeks)
        try:
            if position >= N:
                delivery.idle()
            else:
                n = min(BATCH, N - position)
                delivery.send(*answers(position, n, run.poison))
                position += n
        except KafkaException:
            # The delivery gave up: the process exits, the next one resumes from the
            # group's committed offset with fresh clients and a fresh delivery.
            lives += 1
            clients.consumer.__init__()  # type: ignore[misc]
            clients.ensure_producer()
            delivery, position = run.delivery(), run.committed()
            continue
        if len(consumer.seeks) > seeks:  # the last seek wins (a rewind, then a forward)
            position = consumer.seeks[-1][2]
        # Kafka's truth: a committed offset never passes a record without an outcome
        unanswered = sorted(o for o in range(N) if not run.answered(o))
        assert run.committed() <= (unanswered[0] if unanswered else N), (
            f"offset {run.committed()} committed while record {unanswered[0]} is unanswered")
        reported = all(o in run.durable for o in range(N))
        if position >= N and not unanswered and reported and run.committed() == N:
            break
    assert lives <= 3
    return run


def once(value: bytes, err: KafkaError) -> Callable[[bytes | None], KafkaError | None]:
    """Refuse the delivery of ``value`` the first time only."""
    seen: list[bool] = []

    def refuse(v: bytes | None) -> KafkaError | None:
        if v == value and not seen:
            seen.append(True)
            return err
        return None
    return refuse


def fail_next(call: str, *errors: KafkaError) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        assert run.clients.producer is not None
        run.clients.producer.fail_next[call] = list(errors)
    return inject


def refuse(err: KafkaError, always: bool = False) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        assert run.clients.producer is not None
        run.clients.producer.refuse = ((lambda v: err if v == b"r4" else None) if always
                                       else once(b"r4", err))
    return inject


def refuse_locally(err: KafkaError) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        assert run.clients.producer is not None
        run.clients.producer.refuse_locally = [err]
    return inject


def queue_full(times: int) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        assert run.clients.producer is not None
        run.clients.producer.full_for = times
    return inject


def also_recreate_fails(first: Callable[[Run], None], times: int) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        first(run)
        run.clients.fail_recreate = [TIMED_OUT] * times
    return inject


def also_abort_fails(first: Callable[[Run], None]) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        first(run)
        assert run.clients.producer is not None
        run.clients.producer.fail_next["abort"] = [GONE]
    return inject


def commit_lost(err: KafkaError) -> Callable[[Run], None]:
    """The transaction commits, but its answer is lost on the way back (a timeout, a
    broker gone after the EndTxn was logged): the worker sees a failure."""
    def inject(run: Run) -> None:
        assert run.clients.producer is not None
        run.clients.producer.fail_after_commit = [err]
    return inject


def seek_lost(first: Callable[[Run], None]) -> Callable[[Run], None]:
    """The rewind ``first`` causes does not take: the consumer goes on past it."""
    def inject(run: Run) -> None:
        first(run)
        assert run.clients.consumer is not None
        run.clients.consumer.lost_seeks = 1
    return inject


def forward_lost(first: Callable[[Run], None]) -> Callable[[Run], None]:
    """The rewind ``first`` causes takes; the seek forward past the transaction that
    committed after all does not."""
    def inject(run: Run) -> None:
        first(run)
        assert run.clients.consumer is not None
        run.clients.consumer.kept_seeks, run.clients.consumer.lost_seeks = 1, 1
    return inject


def commit_fails(err: KafkaError) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        assert run.clients.consumer is not None
        run.clients.consumer.fail_commits = [err]
    return inject


def nothing(_run: Run) -> None:
    return None


EXACTLY_ONCE = {
    "no failure": nothing,
    "begin: fatal": fail_next("begin", FATAL),
    "begin: wrong state": fail_next("begin", STATE),
    "begin: fatal, then the new producer's init times out": also_recreate_fails(
        fail_next("begin", FATAL), 1),
    "produce: a delivery times out": refuse(MSG_TIMED_OUT),
    "produce: a record refused for good": refuse(TOO_LARGE, always=True),
    "produce: refused locally": refuse_locally(TOO_LARGE),
    "produce: the local queue is full for a while": queue_full(4),
    "send_offsets: abortable": fail_next("send_offsets", ABORTABLE),
    "send_offsets: fenced": fail_next("send_offsets", FENCED),
    "send_offsets: times out once (called again)": fail_next("send_offsets", TIMED_OUT),
    "send_offsets: keeps timing out": fail_next("send_offsets", TIMED_OUT, TIMED_OUT),
    "commit: abortable": fail_next("commit", ABORTABLE),
    "commit: fatal": fail_next("commit", FATAL),
    "commit: keeps timing out": fail_next("commit", TIMED_OUT, TIMED_OUT, TIMED_OUT),
    "abort: fails after an abortable commit": also_abort_fails(fail_next("commit", ABORTABLE)),
    "recreate: init fails after a fatal commit": also_recreate_fails(
        fail_next("commit", FATAL), 1),
    "recreate: init fails twice after a fencing": also_recreate_fails(
        fail_next("send_offsets", FENCED), 2),
    "rewind: the seek after an abortable commit does not take": seek_lost(
        fail_next("commit", ABORTABLE)),
    "rewind: the seek after a fencing does not take": seek_lost(
        fail_next("send_offsets", FENCED)),
}

AT_LEAST_ONCE = {
    "no failure": nothing,
    "produce: a delivery times out": refuse(MSG_TIMED_OUT),
    "produce: a record refused for good": refuse(TOO_LARGE, always=True),
    "produce: refused locally": refuse_locally(TOO_LARGE),
    "produce: the local queue is full for a while": queue_full(4),
    "commit: refused": commit_fails(KafkaError(KafkaError.ILLEGAL_GENERATION, "moved")),
    "rewind: the seek after a refused delivery does not take": seek_lost(refuse(MSG_TIMED_OUT)),
}


@pytest.mark.parametrize("inject", EXACTLY_ONCE.values(), ids=EXACTLY_ONCE.keys())
def test_exactly_once_answers_every_record_once_whatever_fails(
        inject: Callable[[Run], None]) -> None:
    run = drive("exactly-once", inject)
    assert sorted(run.durable) == list(range(N)), "each record answered exactly once"
    assert [run.answered(o) for o in range(N)] == [1] * N, "one outcome per record in Kafka"
    assert run.committed() == N


# The transaction did commit though the worker was told otherwise: the redo must not
# answer its records again (a 30-minute soak answered 325 requests twice before the
# worker read the committed offsets after recreating its producer).
COMMITTED_AFTER_ALL = {
    "commit: the answer times out": commit_lost(KafkaError(KafkaError._TIMED_OUT, "lost")),
    "commit: a fatal error after the commit": commit_lost(FATAL),
    "commit: the answer is lost and the new producer's init times out": also_recreate_fails(
        commit_lost(FATAL), 1),
    "commit: the answer times out and the seek forward does not take": forward_lost(
        commit_lost(KafkaError(KafkaError._TIMED_OUT, "lost"))),
}


@pytest.mark.parametrize("inject", COMMITTED_AFTER_ALL.values(),
                         ids=COMMITTED_AFTER_ALL.keys())
def test_a_transaction_that_committed_after_all_is_not_answered_again(
        inject: Callable[[Run], None]) -> None:
    run = drive("exactly-once", inject)
    assert [run.answered(o) for o in range(N)] == [1] * N, "one outcome per record in Kafka"
    assert run.committed() == N
    assert len(run.durable) == len(set(run.durable))


@pytest.mark.parametrize("inject", AT_LEAST_ONCE.values(), ids=AT_LEAST_ONCE.keys())
def test_at_least_once_answers_every_record_whatever_fails(
        inject: Callable[[Run], None]) -> None:
    run = drive("at-least-once", inject)
    assert set(run.durable) == set(range(N))
    assert all(run.answered(o) >= 1 for o in range(N)), "an outcome per record in Kafka"
    assert run.committed() == N


def test_a_failed_begin_rewinds_the_batch_it_was_for() -> None:
    """The reproduction in issue 34: begin_transaction raises, the batch is redone (a
    seek to its first offset), and the next transaction never commits past it."""
    run = Run(FakeClients(), Settings(guarantee="exactly-once"), [], PoisonLedger(),
              WorkerStats())
    assert run.clients.producer is not None
    run.clients.producer.fail_next["begin"] = [FATAL]
    delivery = run.delivery()
    delivery.send(*answers(4, 2, run.poison))
    assert run.clients.consumer is not None
    assert run.clients.consumer.seeks == [(TOPIC, 0, 4)]
    assert run.clients.recreated == 1
    assert run.stats.rewinds == 1


def test_adding_offsets_that_timed_out_once_is_resumed_without_a_new_producer() -> None:
    """A rolling restart's controlled shutdown moves the group coordinator: the call
    times out once and is called again; the producer is kept and nothing is redone."""
    run = drive("exactly-once", fail_next("send_offsets", TIMED_OUT))
    assert run.clients.recreated == 0
    assert run.stats.rewinds == 0
    assert run.clients.producer is not None
    assert run.clients.producer.calls.count("abort") == 0


def test_adding_offsets_that_keeps_timing_out_redoes_the_batch() -> None:
    run = drive("exactly-once", fail_next("send_offsets", TIMED_OUT, TIMED_OUT))
    assert run.stats.rewinds == 1


def test_a_dead_lettered_record_is_the_refused_one() -> None:
    run = drive("exactly-once", refuse(TOO_LARGE, always=True))
    assert run.clients.producer is not None
    delivered = [v for v in run.clients.producer.delivered if v is not None]
    assert any(v.startswith(b"dead r4 ") and b"MSG_SIZE_TOO_LARGE" in v for v in delivered)
    assert b"r4" not in delivered


def test_a_recovery_beats_the_watchdog_while_each_bounded_call_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow commit that fails, then a slow abort: both wait on another thread while the
    loop's liveness is beaten (issue 34, item 3: a 30 s watchdog must not kill a worker
    recovering within its timeout chain)."""
    import time

    from stream.worker import bounded_call

    monkeypatch.setattr(bounded_call, "BEAT_EVERY_S", 0.05)
    beats: list[float] = []
    clients = FakeClients()
    producer = clients.producer
    assert producer is not None
    real_commit, real_abort = producer.commit_transaction, producer.abort_transaction

    def slow(call: Callable[[float], None]) -> Callable[[float], None]:
        def wrapped(timeout: float) -> None:
            time.sleep(0.3)
            call(timeout)
        return wrapped

    producer.commit_transaction = slow(real_commit)  # type: ignore[method-assign,assignment]
    producer.abort_transaction = slow(real_abort)  # type: ignore[method-assign,assignment]
    producer.fail_next["commit"] = [ABORTABLE]
    ctx = DeliveryContext(Settings(guarantee="exactly-once"), clients, PoisonLedger(),
                          WorkerStats(), lambda _r, _s: None, lambda _s, _t: None,
                          lambda: beats.append(time.monotonic()))
    delivery = ExactlyOnce(ctx)
    delivery.send(*answers(0, 2, PoisonLedger()))
    assert delivery.end() is False
    assert producer.calls == ["begin", "send_offsets", "commit", "abort"]
    # Each call takes at least 0.3 s, so each wait outlasts at least one 0.05 s slice.
    assert len(beats) >= 2


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_queue_that_stays_full_on_an_abandoned_cluster_redoes_the_batch(guarantee: str) -> None:
    """The worker's produce loop used to wait for room forever, with no beat and no
    abandon check; now the record fails like a refused delivery and its batch is redone."""
    clients = FakeClients()
    assert clients.producer is not None
    clients.producer.full_for = -1
    durable: list[object] = []
    ctx = DeliveryContext(Settings(guarantee=guarantee), clients,
                          PoisonLedger(), WorkerStats(), lambda r, _s: durable.append(r),
                          lambda _s, _t: None, lambda: None, lambda: True)
    delivery: Delivery = ExactlyOnce(ctx) if guarantee == "exactly-once" else AtLeastOnce(ctx)
    delivery.send(*answers(7, 2, PoisonLedger()))
    delivery.idle()
    assert clients.consumer is not None
    assert clients.consumer.seeks[0] == (TOPIC, 0, 7)
    assert durable == []
    assert clients.committed_offsets == {}
    assert clients.consumer.commits == []


def test_a_rewind_that_does_not_take_is_sought_again_once_then_left() -> None:
    """A skipped rewind is sought again and its batch refused; if the records come back
    past the target once more (gone to retention, say), the worker goes on rather than
    loop on it."""
    clients = FakeClients()
    ctx = DeliveryContext(Settings(), clients, PoisonLedger(), WorkerStats(),
                          lambda _r, _s: None, lambda _s, _t: None, lambda: None)
    ctx.sought[(TOPIC, 0)] = 2
    records, _result = answers(5, 3, PoisonLedger())
    assert seek_took(ctx, records) is False
    assert clients.consumer is not None
    assert clients.consumer.seeks == [(TOPIC, 0, 2)]
    assert seek_took(ctx, records) is True  # past it again: go on from there
    assert ctx.sought == {}
    assert seek_took(ctx, answers(8, 1, PoisonLedger())[0]) is True
