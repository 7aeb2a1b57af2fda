"""Run a blocking client call under our own deadline, on a thread we can walk away from.

librdkafka's ``send_offsets_to_transaction`` can block far past its timeout argument when
the group coordinator's broker dies (confluentinc/librdkafka#5456: the coordinator
request's timeout is never checked; #5511: a coordinator broker that left the metadata
is never re-queried). Our chaos runs hit it after a broker SIGKILL: both exactly-once
workers sat in the call for minutes, deaf to SIGTERM (a signal handler cannot run while
the main thread is inside C). The call therefore runs on a daemon thread; when it does
not return in time the caller abandons the client (and this thread with it) and starts
a new one, which fences the old transactional session.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

BEAT_EVERY_S = 1.0  # while waiting, the caller's liveness is beaten this often


class Wedged(Exception):
    """The call did not return within its deadline; the client it used is lost."""


class BoundedCaller:
    """One daemon thread that runs calls handed to it; replaced when a call wedges."""

    def __init__(self, name: str = "bounded-call") -> None:
        self._name = name
        self._start()

    def _start(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = (
            queue.Queue())
        jobs = self._jobs
        threading.Thread(target=self._serve, args=(jobs,), name=self._name, daemon=True).start()

    @staticmethod
    def _serve(jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]]
               ) -> None:
        while True:
            call, reply = jobs.get()
            try:
                reply.put((True, call()))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller, raised there
                reply.put((False, exc))

    def call(self, fn: Callable[[], Any], deadline_s: float,
             beat: Callable[[], None] | None = None) -> Any:
        """``fn()``'s result or exception; :class:`Wedged` after ``deadline_s``, in which
        case the thread is abandoned (a new one serves the next call). ``beat`` is called
        about every second while waiting: a bounded wait on Kafka is not a stuck loop, and
        the liveness watchdog (30 s by default) must not kill a worker that is recovering
        within its timeout chain."""
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
        self._jobs.put((fn, reply))
        deadline = time.monotonic() + deadline_s
        while True:
            left = deadline - time.monotonic()
            try:
                ok, value = reply.get(timeout=max(0.0, min(left, BEAT_EVERY_S)))
                break
            except queue.Empty:
                if left <= BEAT_EVERY_S:
                    self._start()  # the old thread stays blocked in the call, with the old client
                    raise Wedged(f"no answer within {deadline_s:.0f} s") from None
                if beat is not None:
                    beat()
        if ok:
            return value
        raise value
