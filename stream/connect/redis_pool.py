"""One place that turns settings into a Redis client: standalone, Sentinel or Cluster.

* standalone: ``--redis-url``.
* sentinel: ``--redis-sentinels host:port,...`` and ``--redis-master-name``; the client
  asks the sentinels for the current master and asks again after a failover.
* cluster: ``--redis-url`` names any node; keys carry a ``{entity}`` hash tag, so one
  entity's keys share a slot and a batch pipelines per node.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from fallback.redis_client import AsyncRedisClient, RedisClient
from processors.features.cache import FeatureCache
from stream.connect.credentials import redis_security
from stream.exceptions import ConfigurationError
from stream.settings import Settings

log = logging.getLogger(__name__)


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


def make_redis(settings: Settings, timeout_s: float = 0.25,
               client_name: str | None = None) -> RedisClient:
    """A client for the configured Redis deployment (``client_name``: shown by
    ``CLIENT LIST``, so an operator can tell whose connections those are)."""
    named: dict[str, Any] = {"client_name": client_name} if client_name else {}
    security = redis_security(settings)
    if settings.redis_mode == "standalone":
        url, security = standalone_url(settings.redis_url, security)
        return redis.Redis.from_url(url, socket_timeout=timeout_s,
                                    socket_connect_timeout=timeout_s, **named, **security)
    if settings.redis_mode == "sentinel":
        sentinel = make_sentinel(settings, timeout_s)
        master: redis.Redis = sentinel.master_for(
            settings.redis_master_name, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, **named)
        return master
    # One attempt per call: our circuit breaker, not the client, decides when to try again,
    # so a dead cluster costs one timeout per batch until the breaker opens.
    url, rest = standalone_url(settings.redis_url, security)  # from_url: TLS by scheme too
    return RedisCluster.from_url(url, socket_timeout=timeout_s,
                                 socket_connect_timeout=timeout_s,
                                 cluster_error_retry_attempts=1, **named, **rest)


def make_sentinel(settings: Settings, timeout_s: float = 0.25) -> Sentinel:
    """The sentinels of ``settings`` (TLS and login as for the nodes)."""
    security = redis_security(settings)
    return Sentinel(sentinel_hosts(settings), socket_timeout=timeout_s,
                    socket_connect_timeout=timeout_s, sentinel_kwargs=security or None,
                    **security)


def standalone_url(url: str, security: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A client made by ``from_url`` (standalone, Cluster) takes TLS from its URL's
    scheme (redis-py picks the connection class by scheme and would pass an ``ssl``
    argument on to it): rediss:// when TLS is on."""
    rest = dict(security)
    if rest.pop("ssl", False) and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://"):]
    return url, rest


def endpoint(settings: Settings) -> tuple[str, ...]:
    """What identifies one Redis deployment in settings."""
    if settings.redis_mode == "sentinel":
        return ("sentinel", settings.redis_sentinels or "", settings.redis_master_name)
    return (settings.redis_mode, settings.redis_url)


class RedisPool:
    """A worker's Redis clients: one per endpoint, shared by every serving path built for
    it (start-up, each model swap, each region move), closed when the worker is done.

    It also keeps one feature cache per endpoint (``feature_cache``), so a model swap keeps the
    rows already fetched instead of starting cold. Thread-safe: the model loader thread
    builds serving paths too."""

    def __init__(self, client_name: str | None = None) -> None:
        self.client_name = client_name
        self._clients: dict[tuple[str, ...], RedisClient] = {}
        self._caches: dict[tuple[str, ...], FeatureCache] = {}
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> RedisClient:
        """The client of the endpoint ``settings`` names (created on first use)."""
        key = endpoint(settings)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = make_redis(settings, client_name=self.client_name)
            return client

    def feature_cache(self, settings: Settings) -> FeatureCache:
        """The endpoint's feature cache (kept across model swaps)."""
        key = endpoint(settings)
        with self._lock:
            if key not in self._caches:
                self._caches[key] = FeatureCache(settings.feature_cache_size,
                                                 settings.feature_cache_ttl_s)
            return self._caches[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """Close every client (their connections leave Redis at once)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            self._caches = {}
        for client in clients:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing must never stop a shutdown
                log.debug("closing a Redis client: %s", exc)


def make_async_redis(settings: Settings, timeout_s: float = 2.0) -> AsyncRedisClient:
    """The asyncio twin of :func:`make_redis` (for the faust feature app)."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    security = redis_security(settings)
    if settings.redis_mode == "standalone":
        url, rest = standalone_url(settings.redis_url, security)
        return aioredis.from_url(url, socket_timeout=timeout_s, **rest)
    if settings.redis_mode == "sentinel":
        master: aioredis.Redis = AsyncSentinel(
            sentinel_hosts(settings), socket_timeout=timeout_s, sentinel_kwargs=security or None,
            **security).master_for(settings.redis_master_name, socket_timeout=timeout_s)
        return master
    url, rest = standalone_url(settings.redis_url, security)
    return AsyncCluster.from_url(url, socket_timeout=timeout_s, **rest)
