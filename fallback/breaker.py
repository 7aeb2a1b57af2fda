"""Circuit breaker: stop calling a failing dependency, probe it now and then, resume on success.

closed     calls go through; opens after ``failure_threshold`` consecutive failures, or
           when the failure rate over the last ``window`` calls reaches ``failure_rate``
           (once at least ``min_calls`` were made)
open       calls are refused (the caller answers with a fallback at once) for
           ``open_seconds``
half-open  up to ``half_open_calls`` trial calls; a success closes the breaker, a
           failure opens it again
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class BreakerState(IntEnum):
    """Numeric values are what the metric exports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerConfig:
    """When to open and how long to stay open."""

    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    open_seconds: float = 5.0
    half_open_calls: int = 1


class CircuitBreaker:
    """Thread-safe breaker; ``on_change(name, old, new)`` is told of every transition."""

    def __init__(self, name: str, config: BreakerConfig | None = None,
                 on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=self.config.window)
        self._opened_at = 0.0
        self._trials = 0

    @property
    def state(self) -> BreakerState:
        """Current state (an open breaker whose time is up reports half-open)."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    def allow(self) -> bool:
        """May a call go through now? (In half-open, counts as one trial.)"""
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and self._trials < self.config.half_open_calls:
                self._trials += 1
                return True
            return False

    def record_success(self) -> None:
        """The call succeeded."""
        with self._lock:
            self._consecutive = 0
            self._recent.append(True)
            if self._state is not BreakerState.CLOSED:
                self._set(BreakerState.CLOSED)
                self._recent.clear()

    def record_failure(self) -> None:
        """The call failed."""
        with self._lock:
            self._consecutive += 1
            self._recent.append(False)
            if self._state is BreakerState.HALF_OPEN:
                self._open()
                return
            if self._state is BreakerState.CLOSED and self._should_open():
                self._open()

    def _should_open(self) -> bool:
        cfg = self.config
        if self._consecutive >= cfg.failure_threshold:
            return True
        if len(self._recent) >= cfg.min_calls:
            failures = sum(1 for ok in self._recent if not ok)
            return failures / len(self._recent) >= cfg.failure_rate
        return False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._trials = 0
        self._set(BreakerState.OPEN)

    def _maybe_half_open(self) -> None:
        if (self._state is BreakerState.OPEN
                and self._clock() - self._opened_at >= self.config.open_seconds):
            self._trials = 0
            self._set(BreakerState.HALF_OPEN)

    def _set(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old is not new and self._on_change is not None:
            self._on_change(self.name, old, new)
