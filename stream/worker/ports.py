"""The worker's own view of its Kafka clients: the calls its parts make, nothing more.

confluent-kafka's ``Consumer`` and ``Producer`` satisfy these protocols; the delivery
parts are written against them, so their unit tests drive in-memory fakes of *these*
interfaces (``tests/fakes.py``) instead of a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, overload

from confluent_kafka import KafkaError, TopicPartition

OnDelivery = Callable[[KafkaError | None, Any], None]


class ConsumerPort(Protocol):
    """What delivery needs from the consumer: rewinds, commits, the group's metadata."""

    def seek(self, partition: TopicPartition) -> None: ...

    @overload
    def commit(self, *, offsets: list[TopicPartition],
               asynchronous: Literal[True] = ...) -> None: ...

    @overload
    def commit(self, *, offsets: list[TopicPartition],
               asynchronous: Literal[False]) -> list[TopicPartition]: ...

    def consumer_group_metadata(self) -> Any: ...

    def committed(self, partitions: list[TopicPartition],
                  timeout: float) -> list[TopicPartition]: ...


class ProducerPort(Protocol):
    """What delivery needs from the producer, transactions included."""

    def produce(self, topic: str, value: bytes | None, key: bytes | None, *,
                headers: list[tuple[str, str | bytes | None]],
                on_delivery: OnDelivery) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(self, positions: list[TopicPartition],
                                    group_metadata: Any, timeout: float) -> None: ...

    def commit_transaction(self, timeout: float) -> None: ...

    def abort_transaction(self, timeout: float) -> None: ...


class ClientsPort(Protocol):
    """The current clients (they can be replaced) and how to replace the producer."""

    @property
    def consumer(self) -> ConsumerPort | None: ...

    @property
    def producer(self) -> ProducerPort | None: ...

    def recreate_producer(self, abandon: bool = False) -> None:
        """Replace the producer (exactly-once: fencing the old one), within one
        transaction timeout; raises KafkaException when that is not enough, leaving no
        producer until :meth:`ensure_producer`."""

    def ensure_producer(self) -> None:
        """Make the producer a failed :meth:`recreate_producer` left missing (with the
        start-up patience, beating the liveness watchdog); nothing when there is one."""
