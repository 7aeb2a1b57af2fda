"""The one place settings become librdkafka configuration."""

from __future__ import annotations

import uuid
from typing import Any

from stream.connect.credentials import kafka_security
from stream.observability.kafka_logs import kafka_logger
from stream.settings import Settings


def common(settings: Settings) -> dict[str, Any]:
    """Connection and security properties every client shares."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"streaminfer-{settings.namespace}",
        "log.connection.close": False,
        "socket.timeout.ms": settings.socket_timeout_ms,
        "logger": kafka_logger(),  # librdkafka's lines through our logging, repeats folded
    }
    conf.update(kafka_security(settings))
    return conf


def worker_consumer(settings: Settings, worker_id: str = "",
                    stable_id: bool = False) -> dict[str, Any]:
    """Consumer of the request topic: manual commits, cooperative-sticky assignment.

    ``enable.auto.offset.store`` is off too, so nothing but our explicit commits
    moves the group's offsets. With a stable worker identity (``stable_id``: the worker
    id was set, not derived from the pid) and ``static_membership``, the consumer is a
    static member (``group.instance.id``): a restarted worker gets its partitions back at
    once instead of after the session timeout. The price: a static member does not leave
    the group on close, so a worker stopped for good holds its partitions until the
    session timeout.
    """
    conf: dict[str, Any] = {
        **common(settings),
        # Group member ids start with the client id: namespace and worker, for `status`.
        "client.id": f"streaminfer.{settings.namespace}" + (f".{worker_id}" if worker_id else ""),
        "group.id": settings.group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(1000, settings.session_timeout_ms // 5),
        # Checked against every blocking wait at start-up (settings.timeout_chain).
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "isolation.level": "read_committed",
        # The broker answers a fetch once fetch.min.bytes are ready or this wait passes.
        "fetch.wait.max.ms": max(1, min(100, settings.batch_max_linger_ms)),
        "fetch.min.bytes": settings.fetch_min_bytes,
        "queued.max.messages.kbytes": 65536,
    }
    if stable_id and settings.static_membership and worker_id:
        conf["group.instance.id"] = f"{settings.group}.{worker_id}"
    return conf


def transactional_id(settings: Settings, worker_id: str) -> str:
    """One transactional id per worker instance, the same across restarts and producer
    recreations, so ``init_transactions`` aborts the open transaction of the instance's
    predecessor (a new id would leave it open, holding back read_committed readers, until
    ``transaction_timeout_ms``)."""
    return f"{settings.group}.{worker_id}"


def worker_producer(settings: Settings, worker_id: str) -> dict[str, Any]:
    """Producer of predictions and dead letters: acks=all, idempotent; transactional
    (one id per worker instance) in exactly-once mode."""
    conf: dict[str, Any] = {
        **common(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": settings.producer_linger_ms,
        "compression.type": settings.producer_compression,
        "delivery.timeout.ms": settings.delivery_timeout_ms,
    }
    if settings.guarantee == "exactly-once":
        conf["transactional.id"] = transactional_id(settings, worker_id)
        conf["transaction.timeout.ms"] = settings.transaction_timeout_ms
        # librdkafka requires message.timeout.ms (delivery.timeout.ms) <= transaction.timeout.ms
        conf["delivery.timeout.ms"] = min(settings.delivery_timeout_ms,
                                          settings.transaction_timeout_ms)
    return conf


def client_producer(settings: Settings) -> dict[str, Any]:
    """Producer for clients sending requests."""
    return {
        **common(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 10,
        "compression.type": "lz4",
        "delivery.timeout.ms": settings.delivery_timeout_ms,
    }


def tail_consumer(settings: Settings, group: str | None, from_beginning: bool) -> dict[str, Any]:
    """Consumer for ``streaminfer consume``: read_committed, its own throwaway group."""
    return {
        **common(settings),
        "group.id": group or f"{settings.namespace}.tail.{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": group is not None,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "isolation.level": "read_committed",
    }


def admin(settings: Settings) -> dict[str, Any]:
    """Admin client."""
    return common(settings)
