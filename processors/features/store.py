"""The Redis online store: one hash per (view, entity), read in one pipelined round trip.

Key: ``<namespace>:fv:<view>:{<entity>}``; the braces are a Redis Cluster hash tag, so
all of one entity's views live on one slot. Fields: the features plus ``_updated_at``
(epoch ms, written by whoever computed them). Each write refreshes the view's TTL.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

UPDATED_AT = "_updated_at"


class RedisFeatureStore:
    """Reads and writes feature hashes."""

    def __init__(self, client: Any, namespace: str) -> None:
        """``client``: redis.Redis (standalone or Sentinel master) or RedisCluster."""
        self.client = client
        self.namespace = namespace

    def key(self, view: str, entity: str) -> str:
        """The hash of one entity's view."""
        return f"{self.namespace}:fv:{view}:{{{entity}}}"

    def read(self, wanted: Sequence[tuple[str, str, Sequence[str]]]
             ) -> list[tuple[dict[str, float], int | None] | None]:
        """For each (view, entity, feature names): the stored values and updated-at, or
        None when the entity has no hash. One pipelined round trip; raises RedisError."""
        pipe = self.client.pipeline(transaction=False)
        for view, entity, names in wanted:
            pipe.hmget(self.key(view, entity), [*names, UPDATED_AT])
        out: list[tuple[dict[str, float], int | None] | None] = []
        for (_view, _entity, names), values in zip(wanted, pipe.execute(), strict=True):
            if all(v is None for v in values):
                out.append(None)
                continue
            row = {n: float(v) for n, v in zip(names, values[:-1], strict=True) if v is not None}
            updated = int(float(values[-1])) if values[-1] is not None else None
            out.append((row, updated))
        return out

    def write(self, rows: Sequence[tuple[str, str, Mapping[str, float], int | None]],
              ttl_s: Mapping[str, int]) -> None:
        """Write (view, entity, values, updated_at_ms) rows in one pipeline, refreshing TTLs."""
        pipe = self.client.pipeline(transaction=False)
        now = time.time_ns() // 1_000_000
        for view, entity, values, updated in rows:
            key = self.key(view, entity)
            mapping: dict[str, str] = {k: repr(float(v)) for k, v in values.items()}
            mapping[UPDATED_AT] = str(updated if updated is not None else now)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, ttl_s[view])
        pipe.execute()
