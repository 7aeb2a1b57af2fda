"""The streaming feature pipeline: a faust-streaming app from ``<ns>.events`` to Redis.

Per entity it keeps, over event time (each DomainEvent's ``timestamp``): event count
and amount sum in 5-minute and 1-hour tumbling windows aligned to the epoch, and the
time of the last event. The values written are those of the window that holds the
entity's latest event (late events still count in their own window). After every
event it writes them into the entity's
``card_activity`` hash (``tx_count_5m``, ``tx_sum_5m``, ``tx_count_1h``, ``tx_sum_1h``,
``last_event_at``, ``_updated_at``).

Guarantee: the app runs with faust's ``exactly_once`` processing guarantee, so table
changelog writes and consumed offsets commit in one Kafka transaction. After a crash or
restart the tables are rebuilt from the changelog and processing resumes from the
committed offsets: every event is counted once in the tables. Redis writes are side
effects outside the transaction; an event replayed after a crash rewrites the same
aggregate values (the write is an overwrite, not an increment), so Redis converges to
the exactly-once table state.

Memory stays bounded: every window an entity has is indexed per entity (in memory,
seeded from the restored table at the first event), and windows older than three window
lengths before the entity's latest event are deleted, whatever gaps the event times
have; an entity with no event for ``ENTITY_TTL_MS`` of event time (its Redis hash has
expired by then) is forgotten altogether, swept per partition as that partition's
events go by. Deletions happen while processing an event of the same partition, so
their tombstones land in the right changelog partition. Entities restored from the
changelog are swept once they have an event again (until then they are bounded by the
state at the restart), and windows of partitions assigned after the first event are
indexed as their entities' events arrive. Table sizes are reported every minute (to a
callback: ``streaminfer features run --health-port`` serves them as metrics).
Undecodable events go to ``<ns>.dlq`` (stage decode);
those sends are not part of the table transaction (faust ties a send's transaction to
the target topic's partition), so a crash right after one can repeat it: dead letters
from this app are at-least-once, never lost.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import faust
from redis.typing import EncodableT, FieldT

from fallback.deadletter import DeadLetterWriter
from fallback.redis_client import AsyncRedisClient
from schemas.exceptions import SerdeError
from schemas.serde import Decoder

log = logging.getLogger(__name__)
VIEW = "card_activity"
WINDOWS = {"5m": 300, "1h": 3600}
ENTITY_TTL_MS = 86_400_000  # the feature hash's Redis TTL: an idle entity's state is moot
KEEP_WINDOWS = 3  # window lengths kept before an entity's latest event
SWEEP_PER_EVENT = 16  # idle entities examined per event, at most (bounded work)


class _EventRecord:
    """A faust event seen through the SourceRecord protocol (for dead letters)."""

    def __init__(self, event: Any) -> None:
        self._m = event.message

    def topic(self) -> str:
        return str(self._m.topic)

    def partition(self) -> int:
        return int(self._m.partition)

    def offset(self) -> int:
        return int(self._m.offset)

    def key(self) -> bytes | None:
        key: bytes | None = self._m.key
        return key

    def value(self) -> bytes | None:
        value: bytes | None = self._m.value
        return value

    def headers(self) -> Any:
        return list(self._m.headers or [])

    def timestamp(self) -> tuple[int, int]:
        return (1, int(self._m.timestamp * 1000))


def window_key(entity: str, ts_ms: int, size_s: int) -> str:
    """The table key of the tumbling window of ``size_s`` holding ``ts_ms``."""
    return f"{entity}|{size_s}|{ts_ms // (size_s * 1000) * size_s * 1000}"


def expired_windows(keys: Iterable[str], latest_ms: int) -> list[str]:
    """Window keys (``entity|size|start``) that closed over KEEP_WINDOWS lengths before
    ``latest_ms``, at any distance (gaps in event time skip windows)."""
    out = []
    for key in keys:
        _entity, size, start = key.rsplit("|", 2)
        if int(start) + int(size) * 1000 * (1 + KEEP_WINDOWS) <= latest_ms:
            out.append(key)
    return out


class IdleSweep:
    """Entities in the order their last event was seen, per partition; yields those
    whose last event is more than ``ttl_ms`` of event time behind the partition's newest."""

    def __init__(self, ttl_ms: int = ENTITY_TTL_MS, per_call: int = SWEEP_PER_EVENT) -> None:
        self.ttl_ms = ttl_ms
        self.per_call = per_call
        self._seen: dict[int, deque[tuple[str, int]]] = {}
        self._newest: dict[int, int] = {}

    def note(self, partition: int, entity: str, ts_ms: int) -> None:
        """An event of ``entity`` at ``ts_ms`` (its latest) in ``partition``."""
        self._seen.setdefault(partition, deque()).append((entity, ts_ms))
        self._newest[partition] = max(self._newest.get(partition, ts_ms), ts_ms)

    def expired(self, partition: int, latest_of: Callable[[str], int | None]) -> list[str]:
        """Entities of ``partition`` idle past the TTL; ``latest_of(entity)`` is the table's
        current latest event time (an entry is stale when the entity had a newer event)."""
        seen = self._seen.get(partition)
        if not seen:
            return []
        cutoff = self._newest[partition] - self.ttl_ms
        out = []
        for _ in range(self.per_call):
            if not seen or seen[0][1] >= cutoff:
                break
            entity, ts = seen.popleft()
            if latest_of(entity) == ts:
                out.append(entity)
        return out

    def __len__(self) -> int:
        return sum(len(d) for d in self._seen.values())


def _drop(table: Any, key: str) -> None:
    """Delete a key if present. Not ``pop``: a faust table with a default answers a
    missing key with the default, so ``pop`` would then fail deleting it."""
    if key in table:
        del table[key]


def expected_features(events: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The same aggregates computed plainly (tests compare the app against this)."""
    latest: dict[str, int] = {}
    for ev in events:
        latest[ev["entity_id"]] = max(latest.get(ev["entity_id"], 0), ev["timestamp"])
    out: dict[str, dict[str, float]] = {e: {"last_event_at": float(t)} for e, t in latest.items()}
    for w, size in WINDOWS.items():
        for entity, t in latest.items():
            bucket = t // (size * 1000)
            mine = [ev for ev in events if ev["entity_id"] == entity
                    and ev["timestamp"] // (size * 1000) == bucket]
            out[entity][f"tx_count_{w}"] = float(len(mine))
            out[entity][f"tx_sum_{w}"] = float(sum(ev["amount"] for ev in mine))
    return out


def build_app(namespace: str, bootstrap_servers: str, redis_client: AsyncRedisClient, partitions: int,
              replication_factor: int, guarantee: str = "exactly_once",
              session_timeout_s: float = 10.0, datadir: str | None = None,
              report_sizes: Callable[[dict[str, int]], None] | None = None) -> faust.App:
    """The feature app for one namespace (``report_sizes`` gets the table sizes every
    minute).

    ``datadir`` is faust's working directory; by default faust would create
    ``<app id>-data`` in the current directory, so callers pass one under STREAMINFER_HOME.
    """
    app = faust.App(
        f"{namespace}-features",
        broker=[f"kafka://{hp}" for hp in bootstrap_servers.split(",")],
        store="memory://",
        datadir=datadir or f"{namespace}-features-data",
        processing_guarantee=guarantee,
        topic_partitions=partitions,
        topic_replication_factor=replication_factor,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # faust's default is 60 s: a crashed instance would hold its partitions that long.
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=max(1.0, session_timeout_s / 5),
    )
    events = app.topic(f"{namespace}.events", key_serializer="raw", value_serializer="raw")
    dlq = app.topic(f"{namespace}.dlq", key_serializer="raw", value_serializer="raw")
    # Windows as plain tables keyed "<entity>|<window start>": explicit semantics, and
    # the changelog (hence exactly-once) covers them like any table.
    counts = app.Table("window_count", default=int)
    sums = app.Table("window_sum", default=float)
    last_event = app.Table("last_event_at", default=int)
    # entity -> its window keys, in memory (a fourth changelogged table broke the
    # exactly-once convergence test); seeded from the restored table at the first event.
    windows_of: dict[str, set[str]] = {}
    seeded = [False]
    sweep = IdleSweep()
    decode = Decoder("DomainEvent")
    dead = DeadLetterWriter("features-app")
    client = redis_client  # an asyncio client: standalone, Sentinel master or Cluster

    @app.agent(events)
    async def aggregate(stream: Any) -> None:
        async for event in stream.events():
            try:
                ev = decode(event.value or b"")
            except SerdeError as exc:
                letter = dead.build(_EventRecord(event), "decode", exc, time.time_ns() // 10**6)
                headers = [(k, v.encode() if isinstance(v, str) else v)
                           for k, v in letter.headers if v is not None]
                await dlq.send(key=letter.key, value=letter.value, headers=headers)
                continue
            entity, ts = ev["entity_id"], ev["timestamp"]
            latest = max(last_event[entity], ts)
            last_event[entity] = latest
            values: dict[str, float] = {"last_event_at": latest}
            if not seeded[0]:
                for restored in list(counts.keys()):
                    windows_of.setdefault(str(restored).rsplit("|", 2)[0], set()).add(restored)
                seeded[0] = True
            mine = windows_of.setdefault(entity, set())
            for w, size in WINDOWS.items():
                key = window_key(entity, ts, size)
                mine.add(key)
                counts[key] += 1
                sums[key] += ev["amount"]
                current = window_key(entity, latest, size)
                values[f"tx_count_{w}"] = counts[current]
                values[f"tx_sum_{w}"] = sums[current]
            for key in expired_windows(mine, latest):  # keep the tables bounded
                _drop(counts, key)
                _drop(sums, key)
                mine.discard(key)
            partition = int(event.message.partition)
            sweep.note(partition, entity, latest)
            # Not .get(): a faust table with a default answers a missing key with it.
            for idle in sweep.expired(
                    partition, lambda e: last_event[e] if e in last_event else None):  # noqa: SIM401
                for key in windows_of.pop(idle, set()):
                    _drop(counts, key)
                    _drop(sums, key)
                _drop(last_event, idle)
            key = f"{namespace}:fv:{VIEW}:{{{entity}}}"
            mapping: dict[FieldT, EncodableT] = {
                k: repr(float(v)) for k, v in values.items()}
            mapping["_updated_at"] = str(time.time_ns() // 10**6)
            await client.hset(key, mapping=mapping)
            await client.expire(key, 86_400)

    @app.timer(interval=60.0)
    async def sizes() -> None:
        figures = {"last_event_at": len(last_event), "windows": len(counts),
                   "indexed_entities": len(windows_of), "sweep": len(sweep)}
        if report_sizes is not None:
            report_sizes(figures)
        log.info("feature app table sizes: %s", figures)

    return app


def run(app: faust.App, loglevel: str = "warn") -> None:
    """Run the app's worker in this process until a signal stops it."""
    sys.argv = [sys.argv[0], "worker", "-l", loglevel]
    app.main()
