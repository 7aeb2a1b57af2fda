"""librdkafka's own log lines through the project's logging, with repeats folded.

Without a ``logger`` in its configuration librdkafka writes to stderr itself: raw lines,
about twenty a second while a broker refuses connections (58 of 163 lines of a worker's
log once). With :func:`kafka_logger` in every client's configuration (see
``stream.connect.kafka_config.common``) they go through the ``streaminfer.librdkafka``
logger, so they are JSON when stderr is not a terminal, and a line that repeats (digits
ignored, so ports and counters do not make it new) is logged once per ``WINDOW_S`` with
the number of repeats folded into the next one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

LOGGER_NAME = "streaminfer.librdkafka"
WINDOW_S = 30.0
_DIGITS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Pass the first of a kind of line per window; count the rest and say so later."""

    def __init__(self, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self._seen: dict[str, tuple[float, int]] = {}  # kind -> (window start, suppressed)
        self._lock = threading.Lock()  # librdkafka may log from its own threads

    def filter(self, record: logging.LogRecord) -> bool:
        kind = _DIGITS.sub("#", record.getMessage())
        now = self.clock()
        with self._lock:
            started, suppressed = self._seen.get(kind, (-self.window_s, 0))
            if now - started < self.window_s:
                self._seen[kind] = (started, suppressed + 1)
                return False
            self._seen[kind] = (now, 0)
            if len(self._seen) > 1000:  # bounded: forget the oldest kinds
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} like it in the last {self.window_s:g} s)"
        return True


_lock = threading.Lock()


def kafka_logger() -> logging.Logger:
    """The logger librdkafka writes to (the repeat filter installed once)."""
    logger = logging.getLogger(LOGGER_NAME)
    with _lock:
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())
    return logger
