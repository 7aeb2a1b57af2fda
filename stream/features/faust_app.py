"""The streaming feature pipeline: a faust-streaming app from ``<ns>.events`` to Redis.

Per entity it keeps, over event time (each DomainEvent's ``timestamp``): event count
and amount sum in 5-minute and 1-hour tumbling windows aligned to the epoch, and the
time of the last event. The values written are those of the window that holds the
entity's latest event (late events still count in their own window). After every
event it writes them into the entity's ``card_activity`` hash (``tx_count_5m``,
``tx_sum_5m``, ``tx_count_1h``, ``tx_sum_1h``, ``last_event_at``, ``_updated_at``).

Guarantee: one table entry per entity holds its windows *and* the source offsets they
include (``stream/features/aggregates.py``), so one changelog record carries both and
a replayed event is recognised and skipped: every event is counted once in the table,
whatever a crash replays. The app also runs with faust's ``exactly_once`` processing
guarantee (changelog writes and consumed offsets in one Kafka transaction), which
keeps the replay after a crash short; counting no longer depends on it alone, because
a restart after faust's exactly-once path wedged (``watchdog.py``) was seen to replay
events whose counts the changelog already held. Redis writes are side effects outside
the transaction; a replayed event rewrites the entity's current values (an overwrite,
not an increment), so Redis converges to the table state.

Memory stays bounded: windows older than three window lengths before an entity's
latest event are dropped from its entry, whatever gaps the event times have; an entity
with no event for ``ENTITY_TTL_MS`` of event time (its Redis hash has expired by then)
is forgotten altogether, swept per partition as that partition's events go by (its
deletion lands in the right changelog partition). Entities restored from the changelog
are swept once they have an event again. Table sizes are reported every minute (to a
callback: ``streaminfer features run --health-port`` serves them as metrics).
Undecodable events go to ``<ns>.dlq`` (stage decode); those sends are not part of the
table transaction (faust ties a send's transaction to the target topic's partition),
so a crash right after one can repeat it: dead letters from this app are
at-least-once, never lost.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import faust
from redis.typing import EncodableT, FieldT

from fallback.deadletter import DeadLetterWriter
from fallback.redis_client import AsyncRedisClient
from schemas.exceptions import SerdeError
from schemas.serde import Decoder
from stream.features import aggregates

log = logging.getLogger(__name__)
VIEW = "card_activity"
ENTITY_TTL_MS = 86_400_000  # the feature hash's Redis TTL: an idle entity's state is moot
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


def build_app(namespace: str, bootstrap_servers: str, redis_client: AsyncRedisClient, partitions: int,
              replication_factor: int, guarantee: str = "exactly_once",
              session_timeout_s: float = 10.0, datadir: str | None = None,
              report_sizes: Callable[[dict[str, int]], None] | None = None,
              credentials: Any = None) -> faust.App:
    """The feature app for one namespace (``report_sizes`` gets the table sizes every
    minute).

    ``datadir`` is faust's working directory; by default faust would create
    ``<app id>-data`` in the current directory, so callers pass one under STREAMINFER_HOME.
    ``credentials``: faust's broker credentials (``stream.connect.credentials.faust_credentials``).
    """
    app = faust.App(
        f"{namespace}-features",
        broker=[f"kafka://{hp}" for hp in bootstrap_servers.split(",")],
        broker_credentials=credentials,
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
    replays = [0]  # events skipped because the state already counted them
    # One entry per entity: windows, latest event time and the offsets included, in one
    # changelog record (aggregates.py says why).
    state = app.Table("entity_state")
    sweep = IdleSweep()
    decode = Decoder("DomainEvent")
    dead = DeadLetterWriter("features-app")
    client = redis_client  # an asyncio client: standalone, Sentinel master or Cluster

    def latest_of(entity: str) -> int | None:
        current = state.get(entity)
        return None if current is None else int(current["last"])

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
            entity = ev["entity_id"]
            partition, offset = int(event.message.partition), int(event.message.offset)
            current = state.get(entity)
            if current is not None and aggregates.includes(current, partition, offset):
                replays[0] += 1  # counted before a crash or restart: not again
            else:
                current = aggregates.apply(current, partition, offset, ev["timestamp"],
                                           ev["amount"])
                state[entity] = current
                sweep.note(partition, entity, int(current["last"]))
                for idle in sweep.expired(partition, latest_of):
                    del state[idle]
            key = f"{namespace}:fv:{VIEW}:{{{entity}}}"
            mapping: dict[FieldT, EncodableT] = {
                k: repr(v) for k, v in aggregates.features(current).items()}
            mapping["_updated_at"] = str(time.time_ns() // 10**6)
            await client.hset(key, mapping=mapping)
            await client.expire(key, 86_400)

    @app.timer(interval=60.0)
    async def sizes() -> None:
        figures = {"entities": len(state), "sweep": len(sweep), "replayed": replays[0]}
        if report_sizes is not None:
            report_sizes(figures)
        log.info("feature app table sizes: %s", figures)

    return app


def app_ready(app: faust.App) -> bool:
    """Recovered and not rebalancing: from here on, waiting events should be consumed."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # TableManager has it; its ABC does not
    return bool(recovery.completed.is_set() and not app.in_recovery and not app.rebalancing)


def run(app: faust.App, loglevel: str = "warn") -> None:
    """Run the app's worker in this process until a signal stops it."""
    sys.argv = [sys.argv[0], "worker", "-l", loglevel]
    app.main()
