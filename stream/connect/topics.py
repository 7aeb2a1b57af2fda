"""Create the project's topics with the replication the settings ask for."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.connect import kafka_config
from stream.exceptions import ConfigurationError, KafkaOperationError
from stream.settings import Settings


@dataclass(frozen=True)
class TopicState:
    """What ``ensure_topics`` found or did for one topic."""

    name: str
    partitions: int
    replication_factor: int
    created: bool


def topic_names(settings: Settings) -> list[str]:
    """The data topics a namespace uses."""
    return [settings.requests_topic, settings.predictions_topic, settings.dlq_topic,
            settings.events_topic, settings.shadow_topic, settings.feedback_topic,
            settings.inputs_topic]


def broker_count(admin: AdminClient, timeout: float = 15.0) -> int:
    """How many brokers the cluster metadata lists."""
    try:
        return len(admin.list_topics(timeout=timeout).brokers)
    except KafkaException as exc:
        raise KafkaOperationError(
            f"cannot read cluster metadata: {exc}; is Kafka reachable at the bootstrap servers?",
            retriable=True,
        ) from exc


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[TopicState]:
    """Create missing topics; report existing ones. Refuses RF > brokers."""
    admin = AdminClient(kafka_config.admin(settings))
    brokers = broker_count(admin)
    rf, isr = settings.replication_factor, settings.min_insync_replicas
    if rf > brokers:
        raise ConfigurationError(
            f"replication_factor {rf} (--replication-factor / STREAMINFER_REPLICATION_FACTOR) "
            f"exceeds the {brokers} broker(s) of the cluster at {settings.bootstrap_servers}; "
            f"lower it to at most {brokers} or add brokers"
        )
    metadata = admin.list_topics(timeout=timeout).topics
    states: list[TopicState] = []
    to_create: list[NewTopic] = []
    for name in topic_names(settings):
        existing = metadata.get(name)
        if existing is not None and existing.error is None:
            parts = existing.partitions
            replicas = len(next(iter(parts.values())).replicas) if parts else 0
            states.append(TopicState(name, len(parts), replicas, created=False))
            continue
        config = {"min.insync.replicas": str(isr)}
        if name == settings.dlq_topic:
            config["retention.ms"] = str(30 * 24 * 3600 * 1000)
        elif name == settings.shadow_topic:
            config["retention.ms"] = str(7 * 24 * 3600 * 1000)  # for comparing, not serving
        elif name in (settings.feedback_topic, settings.inputs_topic):  # training data
            config["retention.ms"] = str(int(settings.inputs_retention_h * 3600 * 1000))
        to_create.append(NewTopic(name, num_partitions=settings.partitions,
                                  replication_factor=rf, config=config))
    control = f"{settings.namespace}.models"
    if control not in metadata:
        to_create.append(NewTopic(control, num_partitions=1, replication_factor=rf,
                                  config={"cleanup.policy": "compact",
                                          "min.insync.replicas": str(isr)}))
    else:
        states.append(TopicState(control, len(metadata[control].partitions),
                                 len(next(iter(metadata[control].partitions.values())).replicas),
                                 created=False))
    if to_create:
        futures = admin.create_topics(to_create, operation_timeout=timeout)
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaOperationError(f"creating topic {name} failed: {err}") from exc
            count = 1 if name == control else settings.partitions
            states.append(TopicState(name, count, rf, created=True))
        wait_for_leaders(admin, [t.topic for t in to_create], timeout)
    return sorted(states, key=lambda s: s.name)


def wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Block until every partition of ``names`` has a leader (new topics take a moment)."""
    end = time.monotonic() + timeout
    pending = list(names)
    while time.monotonic() < end:
        topics = admin.list_topics(timeout=timeout).topics
        pending = [n for n in names if n not in topics or topics[n].error is not None
                   or not topics[n].partitions
                   or any(p.leader < 0 for p in topics[n].partitions.values())]
        if not pending:
            return
        time.sleep(0.1)
    raise KafkaOperationError(f"topics {pending} have partitions without a leader after "
                              f"{timeout:.0f}s; check the brokers' logs", retriable=True)


def create_topic(settings: Settings, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Create one topic with the settings' replication (used by tests and tools)."""
    admin = AdminClient(kafka_config.admin(settings))
    fut = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=settings.replication_factor,
                  config={"min.insync.replicas": str(settings.min_insync_replicas)})],
        operation_timeout=timeout,
    )[name]
    try:
        fut.result(timeout=timeout)
    except KafkaException as exc:
        raise KafkaOperationError(f"creating topic {name} failed: {exc}") from exc
    wait_for_leaders(admin, [name], timeout)


# Refusals no wait changes: raised at once instead of retried to the deadline.
AUTHORIZATION = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
                 KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION,
                 KafkaError._SSL}


def partition_watermarks(consumer: Consumer, topic: str, partition: int,
                         deadline_s: float = 30.0) -> tuple[int, int]:
    """(low, high) of one partition (``high`` is the last stable offset for a
    read_committed consumer); retried while a new (or freshly mirrored) topic's
    leadership settles, which answers NOT_LEADER_FOR_PARTITION for a moment."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > end or exc.args[0].code() in AUTHORIZATION:
                raise
            time.sleep(0.2)


def watermarks(settings: Settings, topic: str, deadline_s: float = 30.0
               ) -> dict[int, tuple[int, int]]:
    """(low, high) of every partition of ``topic`` ({} when the topic does not exist)."""
    consumer = Consumer({**kafka_config.common(settings), "group.id": "streaminfer-watermarks",
                         "log_level": 2})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        return {p: partition_watermarks(consumer, topic, p, deadline_s) for p in meta.partitions}
    finally:
        consumer.close()


def namespace_topics(names: list[str], namespace: str, own: bool = True,
                     mirrored: bool = True) -> list[str]:
    """Of ``names``, the namespace's topics (``own``) and their mirrored copies
    (``mirrored``: ``<region>.<namespace>.*``), never another namespace's."""
    prefix = f"{namespace}."
    return sorted(n for n in names
                  if (own and n.startswith(prefix))
                  or (mirrored and n.count(".") >= 2 and n.split(".", 1)[1].startswith(prefix)))


def delete_namespace_topics(settings: Settings, own: bool = True, mirrored: bool = True,
                            timeout: float = 30.0) -> list[str]:
    """Delete the namespace's topics and/or their mirrored copies from the cluster of
    ``settings``; returns their names. Topics already gone are not an error. With
    MirrorMaker running, delete every region's own topics first: a copy deleted while its
    source exists is made again."""
    admin = AdminClient(kafka_config.admin(settings))
    doomed = namespace_topics(list(admin.list_topics(timeout=timeout).topics),
                              settings.namespace, own, mirrored)
    if not doomed:
        return []
    for name, future in admin.delete_topics(doomed, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaOperationError(f"deleting topic {name} failed: {exc}") from exc
    return doomed
