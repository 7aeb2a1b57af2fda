"""Dead-letter records: the original bytes plus where and why processing failed.

The value is an Avro ``DeadLetter`` (single-object encoded); the key is the original
key. Headers follow Kafka Connect's convention so existing tools understand them:
``__connect.errors.topic``, ``.partition``, ``.offset``, ``.stage``,
``.exception.class.name``, ``.exception.message``; the original headers are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from schemas.serde import Encoder

# "internal": an unexpected error (a defect, not the record's fault as far as we know)
# while processing this record alone; the error type and message say which.
Stage = Literal["limits", "decode", "decrypt", "validate", "features", "infer", "encode", "produce",
                "internal"]
HEADER_PREFIX = "__connect.errors."
MAX_MESSAGE = 2000


class SourceRecord(Protocol):
    """What a dead letter needs from the failed record (confluent-kafka's Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...  # list of (str, bytes | None), a dict, or None
    def timestamp(self) -> tuple[int, int]: ...


def header_list(raw: Any) -> list[tuple[str, bytes | None]]:
    """Normalise record headers (list of pairs or dict; str or bytes values) to bytes pairs."""
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in pairs]


def header_value(raw: Any, name: str) -> bytes | None:
    """The first value of header ``name`` (bytes), or None when absent."""
    return next((v for k, v in header_list(raw) if k == name), None)


@dataclass(frozen=True, slots=True)
class DeadLetterOut:
    """A dead letter ready to produce."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]]
    request_id: str | None


class DeadLetterWriter:
    """Builds dead-letter records for one worker."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._encode = Encoder("DeadLetter")

    def build(self, record: SourceRecord, stage: Stage, error: BaseException, now_ms: int,
              request_id: str | None = None, attempt: int = 1) -> DeadLetterOut:
        """The dead letter for ``record`` failing at ``stage`` with ``error``."""
        headers = header_list(record.headers())
        ts_type, ts = record.timestamp()
        message = str(error)[:MAX_MESSAGE]
        value = self._encode({
            "key": record.key(),
            "value": record.value(),
            "headers": [{"key": k, "value": v} for k, v in headers],
            "topic": record.topic() or "",
            "partition": record.partition() if record.partition() is not None else -1,
            "offset": record.offset() if record.offset() is not None else -1,
            "timestamp": ts if ts_type != 0 else None,
            "stage": stage,
            "error_type": type(error).__name__,
            "error_message": message,
            "request_id": request_id,
            "worker_id": self.worker_id,
            "attempt": attempt,
            "failed_at": now_ms,
        })
        out_headers: list[tuple[str, str | bytes | None]] = [
            (k, v) for k, v in headers if v is not None]
        out_headers += [
            (HEADER_PREFIX + "topic", (record.topic() or "").encode()),
            (HEADER_PREFIX + "partition", str(record.partition()).encode()),
            (HEADER_PREFIX + "offset", str(record.offset()).encode()),
            (HEADER_PREFIX + "stage", stage.encode()),
            (HEADER_PREFIX + "exception.class.name", type(error).__name__.encode()),
            (HEADER_PREFIX + "exception.message", message.encode()),
        ]
        return DeadLetterOut(record.key(), value, out_headers, request_id)
