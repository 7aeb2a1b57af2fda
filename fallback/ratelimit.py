"""A logger wrapper that limits lines per key: per-record warnings (dead letters, corrupt
features) must not flood the logs when every record of a stream is bad."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class RateLimitedLog:
    """At most ``burst`` lines per ``key`` every ``period_s``; then one summary line."""

    def __init__(self, logger: logging.Logger, burst: int = 10, period_s: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.period_s = period_s
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: Any, exc_info: BaseException | None = None,
                **extra: Any) -> None:
        """Log unless ``key`` already used its burst in this period (``exc_info``: add
        that exception's traceback)."""
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start > self.period_s:
                if count > self.burst:
                    self.logger.warning("%d more %r messages suppressed in the last %.0fs",
                                        count - self.burst, key, now - start)
                start, count = now, 0
            count += 1
            self._windows[key] = (start, count)
        if count <= self.burst:
            self.logger.warning(msg, *args, extra=extra, exc_info=exc_info)
