"""How a worker's canary judge writes its decision: off the loop, conditional, bounded.

The judge decides in the worker loop; the write happens here, on a thread of its own,
through the control topic's one write path (``stream.lifecycle.control_writer``): read
the state in a fenced session and write the decision only if the canary it judged is
still the one running ("the canary changed meanwhile": another worker's judge or an
operator decided first, and nothing is written). A failed write is retried with a
backoff doubling from 1 s to ``MAX_BACKOFF_S`` and logged at most once a minute; only
the newest decision waits (a newer canary's verdict replaces an older unwritten one).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from fallback.ratelimit import RateLimitedLog
from processors.control_state import TransitionError, transition
from stream.lifecycle.control_writer import update
from stream.settings import Settings

log = logging.getLogger(__name__)
_FAILURES = RateLimitedLog(log, burst=1, period_s=60.0)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class Decision:
    """A verdict on one canary version, to be written."""

    version: str
    action: str  # auto_rollback | auto_promote
    reason: str


class JudgePublisher:
    """One thread writing the judge's decisions for one model."""

    def __init__(self, settings: Settings, model: str, actor: str) -> None:
        self.settings, self.model, self.actor = settings, model, actor
        self._pending: Decision | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.written: list[dict[str, Any]] = []  # what this publisher committed
        self.skipped = 0  # decisions overtaken by another writer's
        self.failures = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"judge-publisher-{model}")
        self._thread.start()

    def submit(self, version: str, action: str, reason: str) -> None:
        """Write this decision as soon as possible (it replaces one not written yet)."""
        with self._lock:
            self._pending = Decision(version, action, reason)
        self._wake.set()

    def pending(self) -> Decision | None:
        """The decision not written yet, if any."""
        with self._lock:
            return self._pending

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            decision = self.pending()
            if decision is None or self._stop.is_set():
                continue
            if self._write(decision):
                backoff = FIRST_BACKOFF_S
                with self._lock:
                    if self._pending is decision:
                        self._pending = None
                continue
            self._stop.wait(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
            self._wake.set()

    def _write(self, d: Decision) -> bool:
        """True when written or overtaken (nothing left to do), False to retry."""
        def decide(cur: dict[str, Any] | None) -> dict[str, Any] | None:
            if cur is None or cur.get("canary_version") != d.version:
                return None  # the canary changed meanwhile: its judge's verdict is moot
            return transition(cur, self.model, d.action, reason=d.reason, actor=self.actor)

        try:
            state = update(self.settings, self.model, decide)
        except TransitionError as exc:
            log.warning("canary %s v%s: %s not written (%s)", self.model, d.version, d.action,
                        exc)
            return True
        except Exception as exc:  # noqa: BLE001 - retried with a backoff; serving goes on
            self.failures += 1
            _FAILURES.warning("control-write", "could not write the canary %s of %s v%s "
                              "(%s); retrying with a backoff up to %.0f s (%d failures so "
                              "far)", d.action, self.model, d.version, exc, MAX_BACKOFF_S,
                              self.failures)
            return False
        if state is None:
            self.skipped += 1
            log.info("canary %s v%s: %s not written, another decision came first", self.model,
                     d.version, d.action)
        else:
            self.written.append(state)
            log.info("canary %s v%s: %s written (seq %s)", self.model, d.version, d.action,
                     state.get("seq"))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop (a decision still unwritten is lost: the canary keeps running until a
        judge or an operator decides again)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
