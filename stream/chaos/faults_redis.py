"""Redis faults: killed, paused, and fed corrupt feature values."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import redis

from processors.features.store import RedisFeatureStore
from processors.features.views import FeatureRepo
from stream.chaos.fault import Context, Fault, pause, unpause, wait_for
from stream.cli.features import repo_for, store_for
from stream.exceptions import ConfigurationError


def _feature_store(ctx: Context) -> tuple[FeatureRepo, RedisFeatureStore]:
    """The served model's feature views and the store they live in (the ones
    `streaminfer features get` uses; an error when the model reads no stored features)."""
    return repo_for(ctx.settings), store_for(ctx.settings)


def on_primary(ctx: Context, write: Callable[[RedisFeatureStore], None], what: str,
               deadline_s: float = 30.0) -> None:
    """Run ``write`` against the primary, asking for it again after a failure: under
    Sentinel a write can reach a node the sentinels have just demoted ("The previous
    master is now a slave") or one that is gone, while a failover another strike started
    settles. Raises the last error, naming ``what``, after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        store = store_for(ctx.settings)  # asks the sentinels for the primary afresh
        try:
            write(store)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.ReadOnlyError) as exc:
            if time.monotonic() >= end:
                raise RuntimeError(f"could not {what} within {deadline_s:.0f}s: {exc} "
                                   "(is a Redis failover stuck? `redis-cli -p <sentinel> "
                                   "sentinel masters`)") from exc
            time.sleep(0.5)
        finally:
            store.client.close()


def sentinel_primary(ctx: Context) -> tuple[str, int] | None:
    """The primary the sentinels name (over TLS on a secure cluster); None while they do
    not agree (during a failover)."""
    from stream.connect.redis_pool import make_sentinel

    try:
        host, port = make_sentinel(ctx.settings, timeout_s=1.0).discover_master(
            ctx.settings.redis_master_name)
    except Exception:  # noqa: BLE001 - during a failover the sentinels may not agree yet
        return None
    return str(host), int(port)


def redis_target(ctx: Context) -> tuple[str, str]:
    """The Redis container to strike and what it is: the standalone Redis, or under
    Sentinel the current primary (asked of the sentinels)."""
    if ctx.containers.redis is not None:
        return ctx.containers.redis, "Redis"
    primary = sentinel_primary(ctx)
    if primary is None:
        raise RuntimeError("the sentinels name no primary; check `redis-cli -p <sentinel> "
                           "sentinel masters`")
    return ctx.containers.redis_node_on_port(primary[1]), f"the Redis primary (port {primary[1]})"


class _RedisNodeFault(Fault):
    """A fault on the Redis container (standalone) or the Sentinel primary."""

    def needs(self, ctx: Context) -> None:
        if ctx.containers.redis is None and not ctx.containers.redis_nodes:
            raise ConfigurationError(f"{self.name} needs the Redis containers of a dev "
                                     "cluster (`streaminfer dev up`)")


@dataclass
class RedisKill(_RedisNodeFault):
    """SIGKILL Redis (the dev Redis keeps nothing on disk: it comes back empty); under
    Sentinel, the primary (the sentinels promote the replica; the old primary rejoins as
    a replica)."""

    name: ClassVar[str] = "redis-kill"
    summary: ClassVar[str] = "SIGKILL Redis (or the Sentinel primary), restart it empty"
    hold_s: float = 10.0

    def inject(self, ctx: Context) -> None:
        self._cid, what = redis_target(ctx)
        ctx.containers.docker(self._cid).kill()
        ctx.note(f"killed {what}")

    def heal(self, ctx: Context) -> None:
        if not hasattr(self, "_cid"):
            return
        ctx.containers.docker(self._cid).start()
        ctx.note("Redis started again (empty)")


@dataclass
class RedisPause(_RedisNodeFault):
    """Freeze Redis (or the Sentinel primary): connections open, nothing answers (the
    worst kind of slow)."""

    name: ClassVar[str] = "redis-pause"
    summary: ClassVar[str] = "freeze Redis or the Sentinel primary (SIGSTOP), then thaw it"
    hold_s: float = 10.0

    def inject(self, ctx: Context) -> None:
        self._cid, what = redis_target(ctx)
        pause(ctx.containers.docker(self._cid))
        ctx.note(f"paused {what}")

    def heal(self, ctx: Context) -> None:
        if not hasattr(self, "_cid"):
            return
        unpause(ctx.containers.docker(self._cid))
        ctx.note("Redis resumed")


@dataclass
class RedisCorrupt(Fault):
    """Overwrite the stored features of the entities under load with values that are not
    numbers; predictions must go on, flagged ``features_degraded``, none lost."""

    name: ClassVar[str] = "redis-corrupt"
    summary: ClassVar[str] = "overwrite stored feature values with garbage"
    hold_s: float = 10.0
    entities: int = 500

    def needs(self, ctx: Context) -> None:
        _feature_store(ctx)

    def inject(self, ctx: Context) -> None:
        repo = repo_for(ctx.settings)
        self._degraded0 = ctx.answers.degraded

        def garble(store: RedisFeatureStore) -> None:
            pipe = store.client.pipeline(transaction=False)
            for view in repo.views:
                for i in range(self.entities):
                    key = store.key(view.name, f"card-{i}")
                    pipe.hset(key, mapping={**{n: "not-a-number" for n in view.names},
                                            "_updated_at": "0x-garbage"})
                    pipe.expire(key, 600)
            pipe.execute()

        on_primary(ctx, garble, "write the garbage")
        ctx.note(f"wrote garbage into {len(repo.views)} view(s) of {self.entities} entities")

    def heal(self, ctx: Context) -> None:
        repo = repo_for(ctx.settings)

        def clean(store: RedisFeatureStore) -> None:
            pipe = store.client.pipeline(transaction=False)
            for view in repo.views:
                for i in range(self.entities):
                    pipe.delete(store.key(view.name, f"card-{i}"))
            pipe.execute()

        on_primary(ctx, clean, "remove the garbage")
        ctx.note("removed the garbage")

    def evidence(self, ctx: Context) -> str | None:
        if ctx.answers.degraded <= self._degraded0:
            return "no prediction was flagged features_degraded: the corrupt values were never read"
        return None


@dataclass
class RedisFailover(Fault):
    """SIGKILL the Sentinel-monitored primary; the sentinels promote the replica and the
    workers must follow it. The old primary is started again (empty: no persistence in
    the dev topology) and the sentinels make it a replica of the new one."""

    name: ClassVar[str] = "redis-failover"
    summary: ClassVar[str] = "SIGKILL the Redis primary under Sentinel; a replica takes over"
    hold_s: float = 10.0

    def needs(self, ctx: Context) -> None:
        if ctx.settings.redis_mode != "sentinel" or not ctx.settings.redis_sentinels:
            raise ConfigurationError("redis-failover needs Redis under Sentinel "
                                     "(`streaminfer dev up --redis sentinel`)")
        if not ctx.containers.redis_nodes:
            raise ConfigurationError("redis-failover needs the Redis containers of "
                                     "`streaminfer dev up --redis sentinel`")

    def inject(self, ctx: Context) -> None:
        primary = sentinel_primary(ctx)
        if primary is None:
            raise RuntimeError("the sentinels name no primary; check `redis-cli -p <sentinel> "
                               "sentinel masters`")
        self._old = primary
        self._container = ctx.containers.redis_node_on_port(primary[1])
        started = time.monotonic()
        ctx.containers.docker(self._container).kill()
        ctx.note(f"killed the Redis primary on port {primary[1]}")
        wait_for(lambda: sentinel_primary(ctx) not in (None, self._old), 60,
                 "the sentinels to promote a replica")
        promoted = sentinel_primary(ctx)
        ctx.note(f"the sentinels promoted port {promoted[1] if promoted else '?'} after "
                 f"{time.monotonic() - started:.1f} s")

    def heal(self, ctx: Context) -> None:
        if not hasattr(self, "_container"):
            return  # the primary was never found: nothing was killed
        ctx.containers.docker(self._container).start()
        ctx.note(f"the old primary (port {self._old[1]}) started again; the sentinels make "
                 "it a replica")

    def evidence(self, ctx: Context) -> str | None:
        if not hasattr(self, "_old"):
            return "no primary was found to kill"
        if sentinel_primary(ctx) == self._old:
            return "the primary is the one that was killed: no failover happened"
        return None
