"""Logging: JSON lines for machines, readable lines on a terminal; rate-limited repeats.

JSON records carry ``ts``, ``level``, ``logger``, ``pid``, ``msg`` and any of
``worker_id``, ``request_id``, ``topic``, ``partition``, ``offset``, ``model``,
``model_version``, ``stage`` passed with ``extra=``. Nothing logs once per message at
INFO; per-record warnings (dead letters) go through :class:`RateLimitedLog`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

CONTEXT_FIELDS = ("worker_id", "request_id", "topic", "partition", "offset", "model",
                  "model_version", "stage")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str, fmt: str = "auto") -> None:
    """Configure the root logger on stderr; ``fmt`` is json, text or auto (tty -> text)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s [pid {os.getpid()}] %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler],
                        force=True)
    logging.getLogger("testcontainers").setLevel(logging.WARNING)


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
