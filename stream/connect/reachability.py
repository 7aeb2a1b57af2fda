"""Fail fast when Kafka is not there, and when a topic is misspelt.

A command (not a worker: workers keep retrying and say so through /readyz) asks the
cluster for its metadata once, with ``--connect-timeout-s`` as the deadline. No answer is
one clear line naming the address and what to try, instead of librdkafka retrying
forever; a topic that is not there names the topics that are.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from stream.connect import kafka_config
from stream.connect.refusals import Refusals
from stream.exceptions import KafkaRefusedError, KafkaUnreachableError, UnknownTopicError
from stream.observability.kafka_logs import kafka_logger
from stream.settings import Settings


def require_kafka(settings: Settings) -> ClusterMetadata:
    """The cluster's metadata; :class:`KafkaRefusedError` as soon as Kafka refuses the
    client (credentials, TLS, protocol), :class:`KafkaUnreachableError` after the timeout."""
    refusals = Refusals(kafka_logger())
    admin = AdminClient({**kafka_config.admin(settings), **refusals.conf()})
    end = time.monotonic() + settings.connect_timeout_s
    last: KafkaException | None = None
    while True:
        left = end - time.monotonic()
        try:
            return admin.list_topics(timeout=max(0.1, min(1.0, left)))
        except KafkaException as exc:
            last = exc
        admin.poll(0)  # serves the error callback
        why = refusals.explain(settings)
        if why is not None:
            raise KafkaRefusedError(why)
        if time.monotonic() >= end:
            break
    detail = last.args[0].str() if last is not None else "no answer"
    raise KafkaUnreachableError(
        f"Kafka at {settings.bootstrap_servers} did not answer within "
        f"{settings.connect_timeout_s:g} s ({detail}). Start the local cluster "
        "with `streaminfer dev up`, or point --bootstrap-servers "
        "(STREAMINFER_BOOTSTRAP_SERVERS) at a running one; --connect-timeout-s waits "
        "longer.")


def namespaces(metadata: ClusterMetadata) -> list[str]:
    """Namespaces present on the cluster (those with a ``<ns>.requests`` topic; a
    MirrorMaker copy shows as ``<region>.<ns>``)."""
    return sorted(t.removesuffix(".requests") for t in metadata.topics if t.endswith(".requests"))


def require_namespace(settings: Settings, metadata: ClusterMetadata) -> None:
    """:class:`UnknownTopicError` when the namespace's request topic does not exist."""
    if settings.requests_topic in metadata.topics:
        return
    others = namespaces(metadata)
    raise UnknownTopicError(
        f"namespace {settings.namespace!r} has no topics at {settings.bootstrap_servers} "
        f"({settings.requests_topic} does not exist); "
        + (f"namespaces there: {', '.join(others)}; set --namespace" if others
           else "no namespace there yet")
        + "; `streaminfer topics ensure` creates a namespace's topics")


def require_topic(settings: Settings, metadata: ClusterMetadata, topic: str) -> None:
    """:class:`UnknownTopicError` naming the namespace's topics when ``topic`` is absent."""
    if topic in metadata.topics:
        return
    prefix = settings.namespace + "."
    ours = sorted(t for t in metadata.topics if t.startswith(prefix))
    short = ", ".join(t.removeprefix(prefix) for t in ours)
    # Kafka's authorizer hides the topics a principal may not describe: on a cluster
    # with authentication, "absent" may be "refused", and the message says both.
    user = settings.sasl_username or ("the client certificate's principal"
                                      if settings.ssl_certificate_location else None)
    hidden = (f" or principal {user!r} may not describe it (Kafka hides the topics a "
              "principal has no rights on: `streaminfer acls show`)") if user else ""
    raise UnknownTopicError(
        f"topic {topic} does not exist at {settings.bootstrap_servers}{hidden}; "
        + (f"the topics of namespace {settings.namespace!r} {'visible to it ' if user else ''}"
           f"are: {short}" if ours
           else f"namespace {settings.namespace!r} has no topics there (set --namespace, or "
                "create them with `streaminfer topics ensure`)"))
