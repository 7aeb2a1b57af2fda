"""Run N worker processes on one host, one consumer each.

The parent forwards SIGTERM/SIGINT to the children, waits for them to finish their
batch and leave the group, and exits 0 when they all did. A child that dies on its
own (crash, OOM kill) is restarted with backoff, at most ``MAX_RESTARTS`` times a
minute; the group rebalances its partitions meanwhile. What a restart cannot fix (a bad
model directory, invalid settings) is checked once in the parent before any child starts
(:func:`preflight`), and a child that stops on such an error exits with
``EXIT_CANNOT_HEAL``, which stops the supervisor instead of restarting it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import sys
import time
from collections import deque
from typing import Any

from processors.exceptions import ModelLoadError
from stream.exceptions import ConfigurationError
from stream.observability.logsetup import configure
from stream.settings import Settings

log = logging.getLogger(__name__)
MAX_RESTARTS = 5
STOP_MARGIN_S = 5.0  # on top of --stop-grace-s before a child is killed
EXIT_CANNOT_HEAL = 2  # a child's exit code for errors a restart cannot fix


def preflight(settings: Settings) -> None:
    """Load the served model once (and its fallback section) so a bad directory is one
    clear error before any worker process starts. A registry model is checked by the
    workers: it needs the control topic."""
    if settings.registry_model:
        return
    from processors.model import OnnxModel, RuntimeOptions
    from stream.worker.assembly import fallback_config

    fallback_config(OnnxModel.load(settings.model_path, RuntimeOptions(1, 1, False)))


def run_one(settings: Settings, index: int) -> None:
    """Child entry point: one worker in this process.

    ``settings`` arrives pickled through the pipe multiprocessing's spawn start method
    opens to the child: secrets (``SecretStr``) keep their value and never touch disk or
    a command line. (A JSON dump would carry the mask ``**********`` instead.)"""
    from stream.worker.loop import default_worker_id, make_worker

    if settings.health_port:  # one endpoint per process: port + index
        settings = settings.model_copy(update={"health_port": settings.health_port + index})
    configure(settings.log_level, settings.log_format)
    worker_id = f"{settings.worker_id or default_worker_id()}-{index}" \
        if settings.processes > 1 or settings.autoscale else None
    try:
        # Stable only when --worker-id was given: host-pid-based ids change on every start.
        worker = make_worker(settings, worker_id, stable_id=settings.worker_id is not None)
        worker.install_signal_handlers()
        # Ctrl-C reaches the whole process group; the parent turns it into one SIGTERM per
        # child, so a child ignores SIGINT (else it would count two signals and exit hard).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        worker.run()
    except (ConfigurationError, ModelLoadError) as exc:
        log.error("worker process %d cannot start: %s", index, exc)
        sys.exit(EXIT_CANNOT_HEAL)


def child_args(settings: Settings, index: int) -> tuple[Settings, int]:
    """What a worker process is started with (see :func:`run_one` for why pickled)."""
    return settings, index


class ProcessPool:
    """Worker processes by index: started, restarted after a crash (with backoff, at most
    ``MAX_RESTARTS`` a minute), stopped gracefully. ``elastic_from``: processes with an
    index at or above it join the group as dynamic members (no ``group.instance.id``):
    they are the ones an autoscaler stops, and a dynamic member's partitions move at once
    when it leaves, where a static member's wait out the session timeout."""

    def __init__(self, settings: Settings, elastic_from: int | None = None) -> None:
        self.settings = settings
        self.elastic_from = elastic_from
        self.ctx = mp.get_context("spawn")
        self.procs: dict[int, Any] = {}
        self.leaving: dict[int, Any] = {}  # told to stop, not yet gone
        self.restarts: deque[float] = deque()
        self.failed: str | None = None  # why the pool gave up

    def start(self, i: int) -> bool:
        """Start worker process ``i``; False while its predecessor is still leaving (two
        processes under one worker id would fence each other's transactions)."""
        if i in self.leaving:
            return False
        s = self.settings
        if self.elastic_from is not None and i >= self.elastic_from:
            s = s.model_copy(update={"static_membership": False})
        proc = self.ctx.Process(target=run_one, args=child_args(s, i),
                                name=f"streaminfer-worker-{i}")
        proc.start()
        log.info("started worker process %d (pid %s)", i, proc.pid)
        self.procs[i] = proc
        return True

    def stop(self, i: int) -> None:
        """SIGTERM process ``i``: it finishes its batch, commits and leaves the group."""
        proc = self.procs.pop(i)
        if proc.is_alive():
            proc.terminate()
        self.leaving[i] = proc
        log.info("stopping worker process %d (pid %s)", i, proc.pid)

    def size(self) -> int:
        """Processes running (not counting those leaving)."""
        return len(self.procs)

    def heal(self) -> bool:
        """Restart crashed processes; False when the pool must give up (see ``failed``)."""
        self.leaving = {i: p for i, p in self.leaving.items() if p.is_alive()}
        for i, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            log.error("worker process %d (pid %s) exited with %s", i, proc.pid, proc.exitcode)
            if proc.exitcode == EXIT_CANNOT_HEAL:
                self.failed = "a restart cannot fix that (see the error above): stopping"
                return False
            now = time.monotonic()
            while self.restarts and now - self.restarts[0] > 60:
                self.restarts.popleft()
            if len(self.restarts) >= MAX_RESTARTS:
                self.failed = (f"{MAX_RESTARTS} restarts within a minute: giving up; read "
                               "the errors above")
                return False
            self.restarts.append(now)
            time.sleep(min(5.0, 0.5 * 2 ** len(self.restarts)))
            self.start(i)
        return True

    def stop_all(self) -> int:
        """Stop every process (SIGTERM, then SIGKILL after the grace); the exit status."""
        everyone = [*self.procs.values(), *self.leaving.values()]
        for proc in everyone:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()  # SIGTERM: finish the batch, commit, leave the group
        grace = self.settings.stop_grace_s + STOP_MARGIN_S  # each child exits at stop_grace_s
        deadline = time.monotonic() + grace
        for proc in everyone:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker pid %s did not stop in %.0fs: killing it", proc.pid, grace)
                proc.kill()
                proc.join(5)
        codes = [p.exitcode for p in self.procs.values()]
        log.info("all worker processes stopped: exit codes %s", codes)
        return 0 if self.failed is None and all(c == 0 for c in codes) else 1


class StopFlag:
    """Set by SIGTERM/SIGINT in the parent."""

    def __init__(self, what: str) -> None:
        self.set = False
        self.what = what
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.set:
            log.info("signal %s: stopping %s", signum, self.what)
        self.set = True


def supervise(settings: Settings) -> int:
    """Start ``settings.processes`` workers and keep them running until a signal."""
    preflight(settings)
    stop = StopFlag("the worker processes")
    pool = ProcessPool(settings)
    for i in range(settings.processes):
        pool.start(i)
    while not stop.set and pool.heal():
        time.sleep(0.2)
    if pool.failed:
        log.error("%s", pool.failed)
    return pool.stop_all()
