"""Python API for programs: send requests, read predictions and dead letters.

    from stream.clients import RequestProducer, TopicReader, synthetic_requests
    with RequestProducer(settings) as producer:
        for request in synthetic_requests(1000):
            producer.send(request)
    for record in TopicReader(settings, settings.predictions_topic, count=1000):
        print(record.value["score"])
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, Producer

from fallback.deadletter import header_list
from processors.synthetic import FEATURE_NAMES, sample_features
from schemas.exceptions import SerdeError
from schemas.fingerprints import default_registry
from schemas.serde import HEADER_LEN, Decoder
from stream.connect import kafka_config
from stream.connect.field_keys import Sealer
from stream.connect.queue_room import produce_when_room
from stream.connect.request_encoding import RequestEncoder
from stream.connect.to_end import read_to_end, refusal
from stream.exceptions import ConfigurationError, KafkaOperationError
from stream.settings import Settings


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


def synthetic_requests(count: int, model: str = "fraud", entities: int = 10_000,
                       seed: int | None = None, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """Requests for the reference model: Zipf-distributed entity ids, realistic features.

    ``created_at`` is stamped when the request is yielded, so a rate-limited caller
    gets true send times.
    """
    rng = np.random.default_rng(seed)
    done = 0
    while done < count:
        n = min(chunk, count - done)
        feats = sample_features(rng, n).astype(float).tolist()
        ents = (rng.zipf(1.3, n) % entities).tolist()
        for row, ent in zip(feats, ents, strict=True):
            yield {
                "request_id": uuid.uuid4().hex,
                "entity_id": f"card-{ent}",
                "model": model,
                "created_at": now_ms(),
                "features": dict(zip(FEATURE_NAMES, row, strict=True)),
                "deadline_ms": None,
            }
        done += n


def requests_from_json_lines(lines: Iterable[str], source: str = "<stdin>"
                             ) -> Iterator[dict[str, Any]]:
    """Parse JSON-lines requests; ``request_id`` and ``created_at`` are filled when absent.

    One JSON object per line: ``entity_id`` (string), ``model`` (string), ``features``
    (an object of name: number); optional ``request_id``, ``created_at`` (epoch ms),
    ``deadline_ms`` (epoch ms), ``priority`` (int). Blank lines are skipped. A bad line
    raises ConfigurationError naming the source, the line number and what is wrong.
    """
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{source}:{number}: not JSON: {exc}") from exc
        except RecursionError:  # found by the fuzzer: [[[[... 1,000 deep and more
            raise ConfigurationError(f"{source}:{number}: JSON nested too deeply "
                                     "(a request is one flat object)") from None
        if not isinstance(obj, dict):
            raise ConfigurationError(f"{source}:{number}: expected a JSON object")
        for field in ("entity_id", "model", "features"):
            if field not in obj:
                raise ConfigurationError(f"{source}:{number}: missing field {field!r}")
        if not isinstance(obj["features"], dict):
            raise ConfigurationError(f"{source}:{number}: 'features' must be an object")
        obj.setdefault("request_id", uuid.uuid4().hex)
        obj.setdefault("created_at", now_ms())
        obj.setdefault("deadline_ms", None)
        features: dict[str, float] = {}
        for name, value in obj["features"].items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{source}:{number}: feature {name!r} must be a number, "
                                         f"got {value!r}")
            features[str(name)] = float(value)
        obj["features"] = features
        yield obj


class RequestProducer:
    """Produces InferenceRequests keyed by entity_id (acks=all, idempotent)."""

    def __init__(self, settings: Settings, topic: str | None = None,
                 sealer: Sealer | bool | None = True) -> None:
        """``sealer``: True builds one from the settings (field keys and the model's
        sensitive features; see stream.connect.field_keys), False or None sends in clear."""
        self.topic = topic or settings.requests_topic
        self._encode = RequestEncoder(settings, sealer)
        self._producer = Producer(kafka_config.client_producer(settings))
        self.sent = 0
        self.delivered = 0
        self.failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed.append(str(err))

    def send(self, request: Mapping[str, Any]) -> None:
        """Queue one request (raises SerdeError if it does not fit the schema); its
        sensitive features are sealed first when this producer has a sealer."""
        self.send_raw(*self._encode(request))

    def sealing_summary(self) -> str:
        """How many requests were sealed, with which key ('' when none)."""
        return self._encode.summary()

    def send_raw(self, key: bytes | None, value: bytes,
                 headers: list[tuple[str, bytes | None]] | None = None) -> None:
        """Queue already-encoded bytes (replay uses it; tests inject garbage with it)."""
        produce_when_room(self._producer, self.topic, value, key, headers=headers,
                          on_delivery=self._on_delivery)
        self.sent += 1
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every queued request's delivery report; raise if any failed."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise KafkaOperationError(
                f"{remaining} requests still undelivered after {timeout:.0f}s; is Kafka up?",
                retriable=True)
        if self.failed:
            raise KafkaOperationError(
                f"{len(self.failed)} requests failed delivery, first: {self.failed[0]}")

    def __enter__(self) -> RequestProducer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.flush()


@dataclass(frozen=True)
class ReadRecord:
    """One record read back from a topic, decoded when possible."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any] | None
    error: str | None
    raw: bytes | None
    timestamp_ms: int
    received_ms: int
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def to_json(self) -> str:
        """JSON line: bytes as base64, undecodable values with the error."""
        def enc(obj: Any) -> Any:
            if isinstance(obj, bytes):
                return base64.b64encode(obj).decode()
            if isinstance(obj, dict):
                return {k: enc(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [enc(v) for v in obj]
            return obj
        out: dict[str, Any] = {"topic": self.topic, "partition": self.partition,
                               "offset": self.offset,
                               "key": self.key.decode(errors="replace") if self.key else None}
        if self.value is not None:
            out["value"] = enc(self.value)
        else:
            out["error"] = self.error
            out["raw_base64"] = enc(self.raw or b"")
        return json.dumps(out, separators=(",", ":"))


class AnyDecoder:
    """Decodes any record type shipped in schemas/, chosen by the writer fingerprint."""

    def __init__(self) -> None:
        self._decoders = {name: Decoder(name) for name in default_registry().names()}

    def __call__(self, data: bytes) -> dict[str, Any]:
        writer = default_registry().by_fingerprint(data[2:HEADER_LEN])
        name = writer.name if writer is not None else next(iter(self._decoders))
        return self._decoders[name](data)


class TopicReader:
    """Iterate a topic's records, decoded, until ``count`` or ``timeout`` of silence; or,
    with ``until_end``, up to the end offsets the topics had when reading started
    (:mod:`stream.connect.to_end`: partitions assigned, no group joined, positions
    compared with the last stable offsets, so transaction markers and a worker writing
    meanwhile never keep it reading; a refusal raises, naming what was refused)."""

    def __init__(self, settings: Settings, topic: str | list[str], count: int | None = None,
                 timeout: float | None = 30.0, from_beginning: bool = True,
                 group: str | None = None, until_end: bool = False) -> None:
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.until_end = until_end
        self.count = count
        self.timeout = timeout
        self._consumer = Consumer(kafka_config.tail_consumer(settings, group, from_beginning))
        self._decode = AnyDecoder()

    def _messages(self) -> Iterator[Message]:
        if self.until_end:
            yield from read_to_end(self._consumer, self.topics,
                                   stall_s=self.timeout if self.timeout is not None else 60.0)
            return
        self._consumer.subscribe(self.topics)
        last = time.monotonic()
        while True:
            if self.timeout is not None and time.monotonic() - last > self.timeout:
                return
            for msg in self._consumer.consume(500, 0.2):
                err = msg.error()
                if err is not None:
                    refused = refusal(err, msg.topic() or ", ".join(self.topics))
                    if refused is not None:
                        raise refused
                    if err.fatal():
                        raise KafkaOperationError(f"consumer error: {err}")
                    continue
                last = time.monotonic()
                yield msg

    def __iter__(self) -> Iterator[ReadRecord]:
        """Records until ``count``, ``timeout`` idle seconds, or (``until_end``) the end
        offsets the topics had when reading started, so a reader never chases its own
        output."""
        seen = 0
        try:
            if self.count is not None and self.count <= 0:
                return
            for msg in self._messages():
                raw = msg.value()
                try:
                    value, error = self._decode(raw or b""), None
                except SerdeError as exc:
                    value, error = None, f"{type(exc).__name__}: {exc}"
                seen += 1
                yield ReadRecord(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                                 msg.key(), value, error, raw, msg.timestamp()[1], now_ms(),
                                 tuple(header_list(msg.headers())))
                if self.count is not None and seen >= self.count:
                    return
        finally:
            self._consumer.close()
