"""Bounded exponential backoff for transient errors.

Whether an error is worth retrying is a property of its type: our errors say so with
``retriable``; for third-party errors the caller passes ``is_transient``. A retry loop
never runs past ``budget_s`` in total, so it cannot hold a partition beyond that
bound; the last error is raised and the caller falls back or dead-letters.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def default_is_transient(exc: BaseException) -> bool:
    """Our errors carry ``retriable``; timeouts and connection errors are transient too."""
    retriable = getattr(exc, "retriable", None)
    if isinstance(retriable, bool):
        return retriable
    return isinstance(exc, (TimeoutError, ConnectionError))


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries, delays doubling from ``base_s`` up to ``max_s`` (with
    jitter), and never more than ``budget_s`` in total."""

    attempts: int = 3
    base_s: float = 0.05
    max_s: float = 1.0
    budget_s: float = 2.0

    def call(self, fn: Callable[[], T],
             is_transient: Callable[[BaseException], bool] = default_is_transient,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> T:
        """Run ``fn``; retry transient failures within the bounds; re-raise the last one."""
        start = clock()
        delay = self.base_s
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc) or attempt == self.attempts:
                    raise
                wait = min(delay, self.max_s) * (0.5 + random.random() / 2)  # noqa: S311 - jitter for retries, not a secret
                if clock() - start + wait > self.budget_s:
                    raise
                sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover
