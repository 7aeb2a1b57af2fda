"""Two-region test helpers (the ``regions`` fixture itself is in conftest)."""

from __future__ import annotations

from stream.connect.topics import ensure_topics, watermarks
from stream.devcluster.regions import RunningRegions
from stream.settings import Settings


def region_settings(running: RunningRegions, region: str, namespace: str,
                    principal: str = "admin") -> Settings:
    """A region's settings for ``namespace`` (secure regions: as ``principal``)."""
    return running.settings(region, Settings(namespace=namespace, partitions=4,
                                             replication_factor=1, min_insync_replicas=1),
                            principal)


def count(settings: Settings, topic: str) -> int:
    return sum(high - low for low, high in watermarks(settings, topic).values())


def both_regions(running: RunningRegions, ns: str) -> tuple[Settings, Settings, str]:
    """East's and west's settings (topics ensured in both) and the --regions spec."""
    east, west = region_settings(running, "east", ns), region_settings(running, "west", ns)
    ensure_topics(east)
    ensure_topics(west)
    return east, west, f"east={east.bootstrap_servers};west={west.bootstrap_servers}"
