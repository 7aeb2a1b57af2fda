"""Redis faults: killed, paused, and fed corrupt feature values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from processors.features.store import RedisFeatureStore
from processors.features.views import FeatureRepo
from stream.chaos.fault import Context, Fault
from stream.cli.features import repo_for, store_for


def _feature_store(ctx: Context) -> tuple[FeatureRepo, RedisFeatureStore]:
    """The served model's feature views and the store they live in (the ones
    `streaminfer features get` uses; an error when the model reads no stored features)."""
    return repo_for(ctx.settings), store_for(ctx.settings)


@dataclass
class RedisKill(Fault):
    """SIGKILL Redis (the dev Redis keeps nothing on disk: it comes back empty)."""

    name: ClassVar[str] = "redis-kill"
    summary: ClassVar[str] = "SIGKILL Redis, restart it empty"
    redis_container: ClassVar[bool] = True
    hold_s: float = 10.0

    def inject(self, ctx: Context) -> None:
        ctx.containers.docker(str(ctx.containers.redis)).kill()
        ctx.note("killed Redis")

    def heal(self, ctx: Context) -> None:
        ctx.containers.docker(str(ctx.containers.redis)).start()
        ctx.note("Redis started again (empty)")


@dataclass
class RedisPause(Fault):
    """Freeze Redis: connections stay open and nothing answers (the worst kind of slow)."""

    name: ClassVar[str] = "redis-pause"
    summary: ClassVar[str] = "freeze Redis (SIGSTOP), then thaw it"
    redis_container: ClassVar[bool] = True
    hold_s: float = 10.0

    def inject(self, ctx: Context) -> None:
        ctx.containers.docker(str(ctx.containers.redis)).pause()
        ctx.note("paused Redis")

    def heal(self, ctx: Context) -> None:
        ctx.containers.docker(str(ctx.containers.redis)).unpause()
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
        repo, store = _feature_store(ctx)
        self._degraded0 = ctx.answers.degraded
        pipe = store.client.pipeline(transaction=False)
        for view in repo.views:
            for i in range(self.entities):
                key = store.key(view.name, f"card-{i}")
                pipe.hset(key, mapping={**{n: "not-a-number" for n in view.names},
                                        "_updated_at": "0x-garbage"})
                pipe.expire(key, 600)
        pipe.execute()
        ctx.note(f"wrote garbage into {len(repo.views)} view(s) of {self.entities} entities")

    def heal(self, ctx: Context) -> None:
        repo, store = _feature_store(ctx)
        pipe = store.client.pipeline(transaction=False)
        for view in repo.views:
            for i in range(self.entities):
                pipe.delete(store.key(view.name, f"card-{i}"))
        pipe.execute()
        ctx.note("removed the garbage")

    def evidence(self, ctx: Context) -> str | None:
        if ctx.answers.degraded <= self._degraded0:
            return "no prediction was flagged features_degraded: the corrupt values were never read"
        return None
