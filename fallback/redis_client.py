"""The Redis clients the serving path takes: redis-py's own types, standalone or Sentinel
master (``redis.Redis``) and Cluster (``RedisCluster``). Both offer the same commands and
non-transactional pipelines, which is all the stores use."""

from __future__ import annotations

from typing import TypeAlias

import redis
import redis.asyncio
from redis.cluster import RedisCluster

RedisClient: TypeAlias = redis.Redis | RedisCluster
AsyncRedisClient: TypeAlias = redis.asyncio.Redis | redis.asyncio.RedisCluster
