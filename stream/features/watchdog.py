"""A stall watchdog for the feature app: restart the process when it stops consuming.

faust-streaming's exactly-once restart path can wedge: after a SIGKILL and restart the app
recovers its tables, logs "Worker ready", processes part of the backlog and then its
fetcher waits forever while the event loop lives on (seen here under CPU load; upstream
faust-streaming#47, #136, #323). Nothing inside the process notices. The watchdog looks
from outside faust's event loop, in a thread with its own Kafka client: when the app says
it is ready (recovery done, no rebalance in progress), events wait in ``<ns>.events`` and
the group's committed offsets have not moved for ``stall_after_s``, the app is stalled.
The process then re-executes itself (same pid, same arguments): the new instance fences
the old transactional producers, restores its tables from the changelogs and resumes from
the committed offsets, so nothing is counted twice or lost. Crash-only: a restart is the
one recovery faust is known to get right.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

log = logging.getLogger(__name__)
RESTARTS_ENV = "STREAMINFER_FEATURES_RESTARTS"


@dataclass(frozen=True)
class Progress:
    """The group's committed offsets and the topic's end offsets, summed over partitions."""

    committed: int
    end: int

    @property
    def lag(self) -> int:
        """Events written and not yet committed by the group."""
        return max(0, self.end - self.committed)


class StallWatch:
    """Decides, from successive observations, when the app has stalled.

    Stalled: ready, with lag, and the committed total unchanged for ``stall_after_s``.
    Any movement of the committed offsets, no lag, or the app not ready (recovering or
    rebalancing, which may legitimately take long) restarts the clock.
    """

    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self._since: float | None = None
        self._committed: int | None = None

    def observe(self, now: float, progress: Progress, ready: bool) -> bool:
        """True when the app counts as stalled at ``now``."""
        moved = progress.committed != self._committed
        self._committed = progress.committed
        if not ready or progress.lag == 0 or moved or self._since is None:
            self._since = now
            return False
        return now - self._since >= self.stall_after_s

    def stalled_for(self, now: float) -> float:
        """Seconds since the clock last restarted."""
        return 0.0 if self._since is None else now - self._since


class GroupProgress:
    """Reads a group's committed offsets and a topic's end offsets with its own client
    (never the app's: the app's may be the thing that hangs)."""

    def __init__(self, conf: dict[str, object], group: str, topic: str,
                 timeout_s: float = 5.0) -> None:
        self._consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
        self._topic = topic
        self._timeout = timeout_s

    def __call__(self) -> Progress:
        meta = self._consumer.list_topics(self._topic, timeout=self._timeout)
        parts = sorted(meta.topics[self._topic].partitions)
        tps = [TopicPartition(self._topic, p) for p in parts]
        committed = end = 0
        for tp in self._consumer.committed(tps, timeout=self._timeout):
            low, high = self._consumer.get_watermark_offsets(tp, timeout=self._timeout)
            committed += tp.offset if tp.offset >= 0 else low
            end += high
        return Progress(committed, end)

    def close(self) -> None:
        """Close the client."""
        self._consumer.close()


def restart_process(reason: str) -> None:
    """Replace this process with a fresh copy of itself (same pid and arguments)."""
    restarts = int(os.environ.get(RESTARTS_ENV, "0")) + 1
    log.error("%s; restarting the feature app (restart %d of this process)", reason, restarts)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[RESTARTS_ENV] = str(restarts)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606 - ourselves


class Watchdog:
    """Polls progress every ``interval_s`` in a daemon thread; calls ``on_stall`` once."""

    def __init__(self, probe: Callable[[], Progress], ready: Callable[[], bool],
                 stall_after_s: float, interval_s: float = 5.0,
                 on_stall: Callable[[str], None] = restart_process) -> None:
        self._probe = probe
        self._ready = ready
        self._watch = StallWatch(stall_after_s)
        self._interval = interval_s
        self._on_stall = on_stall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="features-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the thread ends within one interval)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                progress = self._probe()
            except Exception as exc:  # noqa: BLE001 - a broker outage is not a stall of ours
                log.warning("feature app watchdog: cannot read the group's progress (%s); "
                            "trying again in %.0f s", exc, self._interval)
                continue
            now = time.monotonic()
            if self._watch.observe(now, progress, self._ready()):
                self._stop.set()
                self._on_stall(
                    f"feature app stalled: ready, {progress.lag} events waiting, and no "
                    f"offset committed for {self._watch.stalled_for(now):.0f} s")
