"""In-memory stand-ins for our own interfaces (never for Kafka or Redis themselves)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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
