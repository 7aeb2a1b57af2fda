"""Which regions answer, and where a worker should serve.

One thread per region asks it for metadata every ``interval`` seconds. A region is down
once it went ``region_down_after_s`` without an answer; it counts as healthy again after
``region_failback_after_s`` of unbroken answers. The decision is in ``choose``: leave a
region that is down for the first one (in preference order) that answers; return to a
more preferred region once it has been healthy long enough.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.connect import kafka_config
from stream.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RegionHealth:
    """What the probes saw of one region (monotonic seconds)."""

    watched_since: float
    last_ok: float | None = None
    up_since: float | None = None  # start of the current run of answers
    last_error: str = ""


@dataclass(frozen=True)
class Move:
    """A decision to serve elsewhere."""

    kind: str  # failover | failback
    source: str
    target: str
    reason: str


class RegionMonitor:
    """Probes every region in the background; ``choose`` says where to serve."""

    def __init__(self, settings: Settings, regions: Mapping[str, str],
                 on_change: Callable[[str, bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, probe: bool = True) -> None:
        self.order = list(regions)
        self.down_after_s = settings.region_down_after_s
        self.failback_after_s = settings.region_failback_after_s
        self.interval = min(1.0, self.down_after_s / 4)
        self.timeout = max(0.5, min(2.0, self.down_after_s / 2))
        self.clock = clock
        now = clock()
        self.health = {name: RegionHealth(now) for name in self.order}
        self._up = dict.fromkeys(self.order, True)
        self.on_change = on_change
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._probe_loop, name=f"region-probe-{name}",
                             args=(name, AdminClient({
                                 **kafka_config.common(settings.model_copy(
                                     update={"bootstrap_servers": bootstrap})),
                                 "client.id": f"streaminfer.region-probe.{name}",
                                 "log_level": 2})),  # a down region is reported once, here
                             daemon=True)
            for name, bootstrap in regions.items()] if probe else []
        for thread in self._threads:
            thread.start()

    def _probe_loop(self, name: str, admin: AdminClient) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                admin.list_topics(timeout=self.timeout)
                ok, error = True, ""
            except KafkaException as exc:
                ok, error = False, str(exc.args[0])
            self.record(name, ok, error)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def record(self, name: str, ok: bool, error: str = "") -> None:
        """One probe's result (the probe threads call this)."""
        now = self.clock()
        with self._lock:
            h = self.health[name]
            if ok:
                h.last_ok = now
                h.up_since = h.up_since or now
            else:
                h.up_since = None
                h.last_error = error
            up = not self._is_down(name, now)
            changed = up != self._up[name]
            self._up[name] = up
        if changed:
            if up:
                log.info("region %s answers again", name)
            else:
                log.error("region %s is down: no metadata answer for %.1f s (%s)", name,
                          self.down_after_s, h.last_error or "timeout")
            if self.on_change is not None:
                self.on_change(name, up)

    def _is_down(self, name: str, now: float) -> bool:
        h = self.health[name]
        return now - (h.last_ok or h.watched_since) > self.down_after_s

    def is_down(self, name: str) -> bool:
        """No metadata answer for ``region_down_after_s``."""
        with self._lock:
            return self._is_down(name, self.clock())

    def healthy_for(self, name: str) -> float:
        """Seconds of unbroken answers (0 while failing)."""
        with self._lock:
            since = self.health[name].up_since
        return 0.0 if since is None else self.clock() - since

    def answered(self, name: str) -> bool:
        """Whether the region answered at least once since it was last down."""
        with self._lock:
            return self.health[name].up_since is not None and not self._is_down(
                name, self.clock())

    def first_answering(self, deadline_s: float) -> str:
        """At start: the most preferred region that answers within ``deadline_s`` (the
        preferred one when none does)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            for name in self.order:
                if self.answered(name):
                    return name
            time.sleep(0.05)
        return self.order[0]

    def choose(self, current: str) -> Move | None:
        """Where to serve now, when not ``current``."""
        rank = self.order.index(current)
        if self.is_down(current):
            for name in self.order:
                if name != current and self.answered(name):
                    kind = "failback" if self.order.index(name) < rank else "failover"
                    return Move(kind, current, name,
                                f"{current} gave no metadata answer for "
                                f"{self.down_after_s:.0f} s")
            return None
        for name in self.order[:rank]:
            healthy = self.healthy_for(name)
            if healthy >= self.failback_after_s:
                return Move("failback", current, name,
                            f"{name} answered for {healthy:.0f} s")
        return None

    def close(self) -> None:
        """Stop probing."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 1)
