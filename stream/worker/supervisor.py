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
        if settings.processes > 1 else None
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


def supervise(settings: Settings) -> int:
    """Start ``settings.processes`` workers and keep them running until a signal."""
    preflight(settings)
    ctx = mp.get_context("spawn")
    stopping = False

    def start(i: int) -> Any:
        proc = ctx.Process(target=run_one, args=child_args(settings, i), name=f"streaminfer-worker-{i}")
        proc.start()
        log.info("started worker process %d (pid %s)", i, proc.pid)
        return proc

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            log.info("signal %s: stopping %d worker process(es)", signum, len(procs))
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs = {i: start(i) for i in range(settings.processes)}
    restarts: deque[float] = deque()
    while not stopping:
        time.sleep(0.2)
        for i, proc in list(procs.items()):
            if proc.is_alive() or stopping:
                continue
            log.error("worker process %d (pid %s) exited with %s", i, proc.pid, proc.exitcode)
            if proc.exitcode == EXIT_CANNOT_HEAL:
                log.error("a restart cannot fix that (see the error above): stopping")
                stopping = True
                break
            now = time.monotonic()
            while restarts and now - restarts[0] > 60:
                restarts.popleft()
            if len(restarts) >= MAX_RESTARTS:
                log.error("%d restarts within a minute: giving up; read the errors above",
                          MAX_RESTARTS)
                stopping = True
                break
            restarts.append(now)
            time.sleep(min(5.0, 0.5 * 2 ** len(restarts)))
            procs[i] = start(i)
    for proc in procs.values():
        if proc.is_alive() and proc.pid is not None:
            proc.terminate()  # SIGTERM: finish the batch, commit, leave the group
    grace = settings.stop_grace_s + STOP_MARGIN_S  # each child exits itself at stop_grace_s
    deadline = time.monotonic() + grace
    for proc in procs.values():
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            log.error("worker pid %s did not stop in %.0fs: killing it", proc.pid, grace)
            proc.kill()
            proc.join(5)
    codes = [p.exitcode for p in procs.values()]
    log.info("all worker processes stopped: exit codes %s", codes)
    return 0 if all(c == 0 for c in codes) else 1
