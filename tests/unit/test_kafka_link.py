"""Replacing the worker's clients, with in-memory clients from injected factories."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

from stream.exceptions import KafkaOperationError
from stream.observability.health import HealthState
from stream.observability.metrics import WorkerMetrics
from stream.settings import Settings
from stream.worker.kafka_link import KafkaLink
from stream.worker.stats import WorkerStats
from tests.fakes import FakeConsumer, FakeProducer


def link(**settings: Any) -> tuple[KafkaLink, list[FakeConsumer], list[FakeProducer]]:
    consumers: list[FakeConsumer] = []
    producers: list[FakeProducer] = []

    def new_consumer(conf: dict[str, Any]) -> FakeConsumer:
        consumers.append(FakeConsumer(conf))
        return consumers[-1]

    def new_producer(conf: dict[str, Any]) -> FakeProducer:
        producers.append(FakeProducer(conf))
        return producers[-1]

    kl = KafkaLink(Settings(**settings), "w-7", True,
                   WorkerMetrics.create(CollectorRegistry(), process_metrics=False),
                   HealthState(), WorkerStats(),
                   consumer_factory=new_consumer,  # type: ignore[arg-type]
                   producer_factory=new_producer)  # type: ignore[arg-type]
    kl.rebalance = (lambda c, p: None, lambda c, p: None, lambda c, p: None)
    kl.open()
    return kl, consumers, producers


def test_only_fatal_consumer_errors_mean_a_dead_consumer() -> None:
    assert KafkaLink.consumer_is_dead(KafkaError(KafkaError.FENCED_INSTANCE_ID, "x"))
    assert KafkaLink.consumer_is_dead(KafkaError(KafkaError._FATAL, "x", fatal=True))
    assert not KafkaLink.consumer_is_dead(KafkaError(KafkaError._TRANSPORT, "x"))


def test_a_dead_consumer_is_replaced_under_the_same_identity_then_a_twin_is_named() -> None:
    kl, consumers, _ = link(static_membership=True)
    kl.stats.assigned = {("t", 0)}
    fenced = KafkaError(KafkaError.FENCED_INSTANCE_ID, "fenced by a member with the same id")
    for _ in range(3):
        kl.replace_consumer(fenced)
    assert len(consumers) == 4
    assert all(c.closed for c in consumers[:3])
    assert kl.consumer is cast(Any, consumers[-1])
    assert consumers[-1].subscribed == ["streaminfer.requests"]
    ids = {c.conf.get("group.instance.id") for c in consumers}
    assert len(ids) == 1
    assert None not in ids
    assert kl.stats.consumer_recreations == 3
    assert kl.stats.assigned == set()
    assert kl.health.group_joined is False
    with pytest.raises(KafkaOperationError, match="--worker-id 'w-7'"):
        kl.replace_consumer(fenced)  # a fourth within a minute: another live worker


def test_a_replaced_exactly_once_producer_keeps_its_transactional_id() -> None:
    kl, _, producers = link(guarantee="exactly-once")
    producers[0].pending.append((b"queued", lambda err, msg: None))
    kl.recreate_producer()
    assert len(producers) == 2
    assert producers[0].pending == []
    assert producers[0].conf["transactional.id"] == producers[1].conf["transactional.id"]
    assert producers[1].calls == ["init"]  # init_transactions fences the old producer
    assert kl.stats.producer_recreations == 1
    assert kl.producer is cast(Any, producers[1])


def failing_init(kl: KafkaLink, errors: list[KafkaError]) -> None:
    """Every producer the link makes from now on fails its first init_transactions
    calls with ``errors``."""
    original = kl._producer_factory

    def factory(conf: dict[str, Any]) -> Any:
        producer: Any = original(conf)
        producer.fail_next["init"] = list(errors)
        return producer

    kl._producer_factory = factory


def test_init_transactions_retries_while_the_abandoned_session_is_still_busy() -> None:
    kl, _, producers = link(guarantee="exactly-once", transaction_timeout_ms=5000)
    busy = KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "another operation ongoing",
                      retriable=True)
    failing_init(kl, [busy])
    kl.recreate_producer(abandon=True)
    assert producers[-1].calls == ["init", "init"]  # refused once, then done
    assert producers[0].calls == ["init"]  # the abandoned one was not touched


def test_init_transactions_outlasts_a_coordinator_that_times_out_for_a_while() -> None:
    """After a broker died, init_transactions times out until the new coordinator has
    loaded. A recreation inside the delivery's timeout chain (perhaps in the revoke
    callback) gives up after one transaction timeout and leaves no producer; the loop's
    ensure_producer then keeps trying past it with the start-up patience instead of
    raising (the worker would exit), beating the watchdog, and stops trying when the
    worker stops."""
    kl, _, producers = link(guarantee="exactly-once", transaction_timeout_ms=1000)
    timed_out = KafkaError(KafkaError._TIMED_OUT, "Timed out waiting for operation to finish",
                           retriable=True)
    failing_init(kl, [timed_out] * 4)  # 4 x 0.5 s > one 1 s timeout
    beats_before = kl.health.last_loop
    with pytest.raises(KafkaException):
        kl.recreate_producer()
    assert kl.producer is None
    assert kl.health.last_loop > beats_before
    kl.ensure_producer()
    assert producers[-1].calls == ["init"] * 5
    assert kl.producer is cast(Any, producers[-1])
    assert kl.init_patience_s() == 120.0
    assert "init_transactions" in kl.health.kafka_detail
    kl.ensure_producer()  # there is one: nothing happens
    assert kl.producer is cast(Any, producers[-1])

    kl.stopping = lambda: True  # a stopping worker does not wait for the coordinator
    with pytest.raises(KafkaException):
        kl.recreate_producer()
