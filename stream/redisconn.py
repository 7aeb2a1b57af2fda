"""One place that turns settings into a Redis client: standalone, Sentinel or Cluster.

* standalone: ``--redis-url``.
* sentinel: ``--redis-sentinels host:port,...`` and ``--redis-master-name``; the client
  asks the sentinels for the current master and asks again after a failover.
* cluster: ``--redis-url`` names any node; keys carry a ``{entity}`` hash tag, so one
  entity's keys share a slot and a batch pipelines per node.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from stream.exceptions import ConfigurationError
from stream.settings import Settings

RedisClient = Any  # redis.Redis or redis.cluster.RedisCluster: same commands and pipelines


def sentinel_hosts(settings: Settings) -> list[tuple[str, int]]:
    """The parsed --redis-sentinels list (errors name the bad entry)."""
    if not settings.redis_sentinels:
        raise ConfigurationError("redis_mode sentinel needs --redis-sentinels "
                                 "(STREAMINFER_REDIS_SENTINELS) host:port,...")
    hosts = []
    for item in settings.redis_sentinels.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"--redis-sentinels: {item!r} is not host:port")
        hosts.append((host, int(port)))
    return hosts


def make_redis(settings: Settings, timeout_s: float = 0.25) -> RedisClient:
    """A client for the configured Redis deployment."""
    if settings.redis_mode == "standalone":
        return redis.Redis.from_url(settings.redis_url, socket_timeout=timeout_s,
                                    socket_connect_timeout=timeout_s)
    if settings.redis_mode == "sentinel":
        sentinel = Sentinel(sentinel_hosts(settings), socket_timeout=timeout_s,
                            socket_connect_timeout=timeout_s)
        return sentinel.master_for(settings.redis_master_name, socket_timeout=timeout_s,
                                   socket_connect_timeout=timeout_s)
    # One attempt per call: our circuit breaker, not the client, decides when to try again,
    # so a dead cluster costs one timeout per batch until the breaker opens.
    return RedisCluster.from_url(settings.redis_url, socket_timeout=timeout_s,
                                 socket_connect_timeout=timeout_s,
                                 cluster_error_retry_attempts=1)


def make_async_redis(settings: Settings, timeout_s: float = 2.0) -> RedisClient:
    """The asyncio twin of :func:`make_redis` (for the faust feature app)."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    if settings.redis_mode == "standalone":
        return aioredis.from_url(settings.redis_url, socket_timeout=timeout_s)
    if settings.redis_mode == "sentinel":
        return AsyncSentinel(sentinel_hosts(settings), socket_timeout=timeout_s).master_for(
            settings.redis_master_name, socket_timeout=timeout_s)
    return AsyncCluster.from_url(settings.redis_url, socket_timeout=timeout_s)
