"""Logging: JSON lines for machines, readable lines on a terminal; rate-limited repeats.

JSON records carry ``ts``, ``level``, ``logger``, ``pid``, ``msg`` and any of
``worker_id``, ``request_id``, ``topic``, ``partition``, ``offset``, ``model``,
``model_version``, ``stage``, ``scale`` (an autoscaler decision), ``rebalance`` passed with ``extra=``.
Nothing logs once per message at INFO; per-record warnings (dead letters) go through :class:`RateLimitedLog`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from fallback.ratelimit import RateLimitedLog

__all__ = ["JsonFormatter", "RateLimitedLog", "configure"]

CONTEXT_FIELDS = ("worker_id", "request_id", "topic", "partition", "offset", "model",
                  "model_version", "stage", "scale", "rebalance")


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


