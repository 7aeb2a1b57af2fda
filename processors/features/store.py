"""The Redis online store: one hash per (view, entity), read in one pipelined round trip.

Key: ``<namespace>:fv:<view>:{<entity>}``; the braces are a Redis Cluster hash tag, so
all of one entity's views live on one slot. Fields: the features plus ``_updated_at``
(epoch ms, written by whoever computed them). Each write refreshes the view's TTL.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from redis.typing import EncodableT, FieldT

from fallback.redis_client import RedisClient

UPDATED_AT = "_updated_at"
FLOAT32_MAX = 3.4028234663852886e38  # models take float32 inputs: larger values become inf
Raw = bytes | str | None


class CorruptValueError(ValueError):
    """A stored feature value that is not a number of the feature's type."""


def parse_value(raw: bytes | str, ftype: str = "double") -> float:
    """A stored field as a finite number of ``ftype`` (double or int); raises
    :class:`CorruptValueError` naming what is wrong. Non-finite values are refused for
    both types: a model fed NaN or inf answers garbage, which is worse than a default.
    (On the lookup path: ``float`` takes the bytes as they are, no decoding first.)"""
    try:
        value = float(raw)
    except (ValueError, TypeError):
        raise CorruptValueError(f"not a number: {_shown(raw)}") from None
    if value - value != 0.0:  # NaN or +-inf
        raise CorruptValueError(f"not finite: {_shown(raw)}")
    if value > FLOAT32_MAX or value < -FLOAT32_MAX:
        raise CorruptValueError(f"out of float32 range: {_shown(raw)}")
    if ftype == "int" and not value.is_integer():
        raise CorruptValueError(f"not an integer: {_shown(raw)}")
    return value


def _shown(raw: bytes | str) -> str:
    """The stored text, shortened, for an error message."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return repr(text[:40])


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One (view, entity) hash as read: the values that parsed, when it was updated, and
    the fields whose stored text is not a valid value (field -> what is wrong)."""

    values: dict[str, float]
    updated_at_ms: int | None
    corrupt: dict[str, str] = field(default_factory=dict)


class RedisFeatureStore:
    """Reads and writes feature hashes."""

    def __init__(self, client: RedisClient, namespace: str) -> None:
        """``client``: redis.Redis (standalone or Sentinel master) or RedisCluster."""
        self.client = client
        self.namespace = namespace

    def key(self, view: str, entity: str) -> str:
        """The hash of one entity's view."""
        return f"{self.namespace}:fv:{view}:{{{entity}}}"

    def read(self, wanted: Sequence[tuple[str, str, Sequence[str]]],
             types: Mapping[str, str] | None = None) -> list[StoredRow | None]:
        """For each (view, entity, feature names): the stored row, or None when the
        entity has no hash. One pipelined round trip; raises RedisError only.

        ``types`` maps feature names to ``double``/``int`` (default double). A field that
        does not parse as its type is left out of ``values`` and named in ``corrupt``;
        one bad field never fails the read (it used to stop the worker)."""
        types = types or {}
        out: list[StoredRow | None] = []
        for (_view, _entity, names), values in zip(wanted, self._fetch(wanted), strict=True):
            if all(v is None for v in values):
                out.append(None)
                continue
            row: dict[str, float] = {}
            corrupt: dict[str, str] = {}
            for name, raw in zip(names, values[:-1], strict=True):
                if raw is None:
                    continue
                try:
                    row[name] = parse_value(raw, types.get(name, "double"))
                except CorruptValueError as exc:
                    corrupt[name] = str(exc)
            updated: int | None = None
            if values[-1] is not None:
                try:
                    updated = int(parse_value(values[-1], "int"))
                except CorruptValueError as exc:
                    corrupt[UPDATED_AT] = str(exc)
            out.append(StoredRow(row, updated, corrupt))
        return out

    def _fetch(self, wanted: Sequence[tuple[str, str, Sequence[str]]]) -> list[list[Raw]]:
        """The raw fields (then ``_updated_at``) of each wanted hash, one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for view, entity, names in wanted:
            pipe.hmget(self.key(view, entity), [*names, UPDATED_AT])
        return list(pipe.execute())

    def write(self, rows: Sequence[tuple[str, str, Mapping[str, float], int | None]],
              ttl_s: Mapping[str, int]) -> None:
        """Write (view, entity, values, updated_at_ms) rows in one pipeline, refreshing TTLs."""
        pipe = self.client.pipeline(transaction=False)
        now = time.time_ns() // 1_000_000
        for view, entity, values, updated in rows:
            key = self.key(view, entity)
            mapping: dict[FieldT, EncodableT] = {k: repr(float(v)) for k, v in values.items()}
            mapping[UPDATED_AT] = str(updated if updated is not None else now)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, ttl_s[view])
        pipe.execute()
