"""In-memory stand-ins for our own interfaces (never for Kafka or Redis themselves)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from fallback.redis_client import RedisClient
from processors.features.store import UPDATED_AT, RedisFeatureStore


@dataclass
class FakeMessage:
    """Implements the parts of confluent-kafka's Message API the pipeline reads."""

    _value: bytes | None
    _key: bytes | None = b"k"
    _topic: str = "t.requests"
    _partition: int = 0
    _offset: int = 0
    _headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    _timestamp: int = 1_700_000_000_000
    _error: object | None = None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset

    def headers(self) -> Sequence[tuple[str, bytes | None]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)

    def error(self) -> object | None:
        return self._error


class ScriptedSource:
    """A BatchSource that returns scripted consume() results and records each call."""

    def __init__(self, script: list[list[FakeMessage]], clock: list[float] | None = None,
                 advance: float = 0.0) -> None:
        self.script = list(script)
        self.calls: list[tuple[int, float]] = []
        self.clock = clock
        self.advance = advance

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self.calls.append((num_messages, timeout))
        if self.clock is not None:
            self.clock[0] += self.advance
        if not self.script:
            return []
        return self.script.pop(0)[:num_messages]


class FakeStore(RedisFeatureStore):
    """Our RedisFeatureStore with its one Redis round trip (``_fetch``) over dicts; can be
    made to fail like Redis. ``rows`` hold numbers, ``raw`` hold fields as stored text."""

    def __init__(self) -> None:
        super().__init__(cast(RedisClient, None), "t")  # _fetch is overridden: no client
        self.rows: dict[tuple[str, str], tuple[dict[str, float], int | None]] = {}
        self.raw: dict[tuple[str, str], dict[str, bytes | str]] = {}
        self.fail = False
        self.reads = 0

    def _fetch(self, wanted: Sequence[tuple[str, str, Sequence[str]]]
               ) -> list[list[bytes | str | None]]:
        self.reads += 1
        if self.fail:
            raise redis.TimeoutError("Timeout reading from socket")
        out: list[list[bytes | str | None]] = []
        for v, e, names in wanted:
            fields: dict[str, bytes | str] = dict(self.raw.get((v, e), {}))
            if (v, e) in self.rows:
                values, updated = self.rows[(v, e)]
                fields.update({k: repr(x) for k, x in values.items()})
                if updated is not None:
                    fields[UPDATED_AT] = str(updated)
            out.append([fields.get(n) for n in [*names, UPDATED_AT]])
        return out

    def write(self, rows: Sequence[tuple[str, str, Mapping[str, float], int | None]],
              ttl_s: Mapping[str, int]) -> None:
        for v, e, values, updated in rows:
            self.rows[(v, e)] = (dict(values), updated)


# --- the worker's client ports (stream.worker.ports), in memory ----------------------------
def tp_tuple(tp: TopicPartition) -> tuple[str, int, int]:
    """(topic, partition, offset) of a TopicPartition, for assertions."""
    return tp.topic, tp.partition, tp.offset


class FakeConsumer:
    """ConsumerPort: records seeks and commits; its rebalance callbacks can be fired."""

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        self.conf = conf or {}
        self.seeks: list[tuple[str, int, int]] = []
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []  # (offsets, async)
        self.subscribed: list[str] = []
        self.closed = False
        self.fail_commits: list[KafkaError] = []  # commit() raises these, one per call
        self.group_offsets: dict[tuple[str, int], int] = {}  # the broker's committed offsets
        self.lost_seeks = 0  # this many seeks are accepted without effect
        self.kept_seeks = 0  # ...after this many have taken

    def seek(self, partition: TopicPartition) -> None:
        if self.kept_seeks:
            self.kept_seeks -= 1
        elif self.lost_seeks:  # accepted, but the position does not move (seen in librdkafka)
            self.lost_seeks -= 1
            return
        self.seeks.append(tp_tuple(partition))

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if self.fail_commits:
            raise KafkaException(self.fail_commits.pop(0))
        self.commits.append(([tp_tuple(tp) for tp in offsets], asynchronous))
        return None if asynchronous else offsets

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def committed(self, partitions: list[TopicPartition],
                  timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition,
                               self.group_offsets.get((tp.topic, tp.partition), -1001))
                for tp in partitions]

    def subscribe(self, topics: list[str], **_callbacks: Any) -> None:
        self.subscribed = topics

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """ProducerPort: deliveries are reported on poll(), each refused when ``refuse`` says
    so; a transactional call named in ``fail_next`` raises that error once.

    Transactions behave like librdkafka's: a delivery refused inside a transaction makes
    its commit fail with an abortable error, and the offsets sent to a transaction reach
    ``committed_offsets`` (shared by every producer of one :class:`FakeClients`: the
    broker's view) only when it commits."""

    def __init__(self, conf: dict[str, Any] | None = None,
                 refuse: Callable[[bytes | None], KafkaError | None] = lambda _v: None,
                 committed_offsets: dict[tuple[str, int], int] | None = None,
                 committed_values: list[bytes | None] | None = None) -> None:
        self.conf = conf or {}
        self.refuse = refuse
        self.hold = False  # a broker that never answers: nothing is reported
        self.pending: list[tuple[bytes | None, Callable[..., None]]] = []
        self.delivered: list[bytes | None] = []
        self.calls: list[str] = []
        self.fail_next: dict[str, list[KafkaError]] = {}
        # commit_transaction commits, then raises these (an answer lost on the way back)
        self.fail_after_commit: list[KafkaError] = []
        self.committed_offsets = {} if committed_offsets is None else committed_offsets
        self.committed_values = [] if committed_values is None else committed_values
        self.txn_offsets: dict[tuple[str, int], int] = {}
        self.txn_values: list[bytes | None] = []  # delivered in the open transaction
        self.txn_refused = False
        self.refuse_locally: list[KafkaError] = []  # produce() raises these, one per call
        self.full_for = 0  # produce() raises BufferError this many more times (-1: always)

    def produce(self, topic: str, value: bytes | None, key: bytes | None, *,
                headers: list[tuple[str, str | bytes | None]] | None = None,
                on_delivery: Callable[..., None] = lambda _err, _msg: None) -> None:
        if self.full_for:
            self.full_for -= 1 if self.full_for > 0 else 0
            raise BufferError("Local: Queue full")
        if self.refuse_locally:
            raise KafkaException(self.refuse_locally.pop(0))
        self.pending.append((value, on_delivery))

    def poll(self, timeout: float) -> int:
        if self.hold:
            return 0
        reported, self.pending = self.pending, []
        for value, on_delivery in reported:
            err = self.refuse(value)
            if err is None:
                self.delivered.append(value)
                self.txn_values.append(value)
            else:
                self.txn_refused = True
            on_delivery(err, None)
        return len(reported)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        errors = self.fail_next.get(name)
        if errors:
            raise KafkaException(errors.pop(0))

    def begin_transaction(self) -> None:
        self._call("begin")
        self.txn_offsets, self.txn_values, self.txn_refused = {}, [], False

    def send_offsets_to_transaction(self, positions: list[TopicPartition], group_metadata: Any,
                                    timeout: float) -> None:
        self._call("send_offsets")
        self.txn_offsets.update({(p.topic, p.partition): p.offset for p in positions})

    def commit_transaction(self, timeout: float) -> None:
        self.poll(0)
        self._call("commit")
        if self.txn_refused:
            raise KafkaException(KafkaError(KafkaError._STATE, "a delivery failed in the "
                                            "transaction", txn_requires_abort=True))
        self.committed_offsets.update(self.txn_offsets)
        self.committed_values.extend(self.txn_values)
        self.txn_offsets, self.txn_values = {}, []
        if self.fail_after_commit:
            raise KafkaException(self.fail_after_commit.pop(0))

    def abort_transaction(self, timeout: float) -> None:
        self.pending = []
        self._call("abort")
        self.txn_offsets, self.txn_values, self.txn_refused = {}, [], False

    def init_transactions(self, timeout: float) -> None:
        self._call("init")

    def purge(self) -> None:
        self.pending = []

    def flush(self, timeout: float) -> int:
        return self.poll(0)


class FakeClients:
    """ClientsPort over the fakes; a recreated producer is a fresh FakeProducer (its
    ``init_transactions`` fails with the errors in ``fail_recreate``, one per attempt,
    like KafkaLink's: no producer is left then, until ensure_producer)."""

    def __init__(self, producer: FakeProducer | None = None) -> None:
        self.consumer: FakeConsumer | None = FakeConsumer()
        self.committed_offsets: dict[tuple[str, int], int] = {}  # by transactions
        self.consumer.group_offsets = self.committed_offsets
        self.committed_values: list[bytes | None] = []  # delivered in committed transactions
        self.producer: FakeProducer | None = producer or FakeProducer()
        self.producer.committed_offsets = self.committed_offsets
        self.producer.committed_values = self.committed_values
        self.producers: list[FakeProducer] = [self.producer]  # every one, the replaced too
        self.recreated = 0
        self.abandoned = 0
        self.fail_recreate: list[KafkaError] = []

    def recreate_producer(self, abandon: bool = False) -> None:
        self.recreated += 1
        self.abandoned += int(abandon)
        self.producer = None
        if self.fail_recreate:
            raise KafkaException(self.fail_recreate.pop(0))
        self._new()

    def ensure_producer(self) -> None:
        if self.producer is None:
            self._new()

    def _new(self) -> None:
        self.producer = FakeProducer(committed_offsets=self.committed_offsets,
                                     committed_values=self.committed_values)
        self.producers.append(self.producer)
