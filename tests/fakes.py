"""In-memory stand-ins for our own interfaces (never for Kafka or Redis themselves)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import redis

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
        super().__init__(None, "t")
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
