"""docs/running-securely.md's "Who can do what", cell by cell, on the secure stack.

Every principal tries to write and to read each of the namespace's topics (and its Redis
keys); the matrix below is that table's "after" column, operation by operation. A cell
that is allowed must succeed, a refused one must fail with Kafka's or Redis' refusal.
One producer and one consumer per principal, the principals side by side, so the whole
table costs seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from stream.access.declaration import load
from stream.connect import kafka_config
from stream.connect.redis_pool import make_redis
from stream.settings import Settings
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

TOPICS = ("requests", "events", "feedback", "predictions", "dlq", "shadow", "inputs", "models")

# principal -> (topics it may write, topics it may read); the rest is refused.
KAFKA: dict[str, tuple[set[str], set[str]]] = {
    "admin": (set(TOPICS), set(TOPICS)),
    "producer": ({"requests", "events", "feedback"}, set()),
    "worker": ({"predictions", "dlq", "shadow", "inputs", "models"},
               {"requests", "models", "predictions"}),
    "consumer": (set(), {"predictions"}),
    "features": ({"dlq"}, {"events"}),
    "release": ({"models"}, {"models"}),
    "retrain": ({"models"}, {"inputs", "feedback", "predictions", "models"}),
    "dlq-operator": ({"requests"}, {"dlq"}),
    "keda": (set(), set()),
    "mirrormaker": (set(), set(TOPICS)),
}

# principal -> Redis operations it may do (the rest is refused); None: no Redis user.
REDIS: dict[str, set[str] | None] = {
    "admin": {"read features", "write features", "answered", "delivered", "dlq ledger",
              "key names", "other namespace"},
    "worker": {"read features", "answered"},
    "consumer": {"delivered"},
    "features": {"read features", "write features"},
    "dlq-operator": {"dlq ledger"},
    "producer": None, "release": None, "retrain": None, "keda": None, "mirrormaker": None,
}


def _writes(settings: Settings) -> dict[str, bool]:
    """Topic -> whether Kafka took a record from this principal."""
    producer = Producer({**kafka_config.common(settings), "acks": "all",
                         "enable.idempotence": False, "delivery.timeout.ms": 10_000,
                         "linger.ms": 0})
    outcome: dict[str, bool] = {}
    for kind in TOPICS:
        topic = f"{settings.namespace}.{kind}"
        producer.produce(topic, b"matrix", b"k", partition=0, on_delivery=lambda err, _m, k=kind:
                         outcome.__setitem__(k, err is None))  # type: ignore[misc]
    producer.flush(20)
    assert set(outcome) == set(TOPICS), f"no delivery report for {set(TOPICS) - set(outcome)}"
    return outcome


def _reads(settings: Settings) -> dict[str, bool]:
    """Topic -> whether this principal could read its first record (partition 0; every
    topic holds one, written by the admin). A topic the principal may not even describe
    is hidden from its metadata: not readable."""
    consumer = Consumer({**kafka_config.common(settings), "enable.auto.commit": False,
                         "group.id": f"{settings.namespace}.matrix", "log_level": 2})
    visible = set(consumer.list_topics(timeout=10).topics)
    outcome = {k: False for k in TOPICS if f"{settings.namespace}.{k}" not in visible}
    consumer.assign([TopicPartition(f"{settings.namespace}.{k}", 0, 0) for k in TOPICS
                     if k not in outcome])
    deadline = time.monotonic() + 20
    try:
        while len(outcome) < len(TOPICS) and time.monotonic() < deadline:
            for msg in consumer.consume(50, 0.5):
                if not msg.topic():
                    continue  # the group's coordinator: the read does not need it
                kind = (msg.topic() or "").rsplit(".", 1)[-1]
                err = msg.error()
                if err is None:
                    outcome.setdefault(kind, True)
                elif err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    outcome.setdefault(kind, False)
    finally:
        consumer.close()
    assert set(outcome) == set(TOPICS), f"neither a record nor a refusal: {set(TOPICS) - set(outcome)}"
    return outcome


def _redis(settings: Settings) -> set[str] | None:
    """The Redis operations this principal managed (None: it could not log in)."""
    ns = settings.namespace
    try:
        client: Any = make_redis(settings, timeout_s=5.0)
        client.ping()
    except redis.AuthenticationError:
        return None
    tries: dict[str, Callable[[], Any]] = {
        "read features": lambda: client.hgetall(f"{ns}:fv:card_activity:{{m}}"),
        "write features": lambda: client.hset(f"{ns}:fv:card_activity:{{m}}", "x", "1"),
        "answered": lambda: client.set(f"{ns}:answered:{{m}}", "1"),
        "delivered": lambda: client.set(f"{ns}:delivered:g:{{m}}", "1"),
        "dlq ledger": lambda: client.sadd(f"{ns}:dlq:replayed", "m"),
        "key names": lambda: client.scan(0, match="*"),
        "other namespace": lambda: client.get(f"other-{ns}:fv:card_activity:{{m}}"),
    }
    done = set()
    for name, attempt in tries.items():
        try:
            attempt()
            done.add(name)
        except redis.exceptions.NoPermissionError:
            pass
    return done


@pytest.mark.parametrize("stack", ["secure"], indirect=True)
def test_who_can_do_what_cell_by_cell(stack: Stack) -> None:
    admin = stack.settings()
    assert set(KAFKA) == set(REDIS) == set(load().principals), \
        "a principal was added to access.toml: add its row here and in the docs' table"
    _writes(admin)  # a record in every topic, so that allowed reads find one
    results: dict[str, tuple[dict[str, bool], dict[str, bool], set[str] | None]] = {}
    errors: list[BaseException] = []

    def run(principal: str) -> None:
        try:
            s = stack.acting_as(admin, principal)
            results[principal] = (_writes(s), _reads(s), _redis(s))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in KAFKA if p != "admin"]
    threads.append(threading.Thread(target=run, args=("admin",)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    wrong = []
    for principal, (may_write, may_read) in KAFKA.items():
        writes, reads, redis_done = results[principal]
        for kind in TOPICS:
            if writes[kind] != (kind in may_write):
                wrong.append(f"{principal} {'wrote' if writes[kind] else 'could not write'} "
                             f"{kind}")
            if reads[kind] != (kind in may_read):
                wrong.append(f"{principal} {'read' if reads[kind] else 'could not read'} {kind}")
        if redis_done != REDIS[principal]:
            wrong.append(f"{principal} in Redis: did {sorted(redis_done or [])}, the table "
                         f"says {sorted(REDIS[principal] or [])}")
    assert wrong == [], "\n".join(wrong)
