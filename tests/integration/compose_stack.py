"""A compose file brought up for one test on its own project name, and taken down after."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def compose_up(file: Path, env: dict[str, str], services: tuple[str, ...] = (),
               logs_of: str | None = None) -> Iterator[list[str]]:
    """`compose up -d` (of ``services``, or all); yields the compose command line. On the
    way out prints the last log lines of ``logs_of`` and runs `down -v`."""
    from stream.devcluster.engine import ensure_compose

    compose = [*ensure_compose(), "-p", f"si{uuid.uuid4().hex[:8]}", "-f", str(file)]
    up = subprocess.run([*compose, "up", "-d", *(["--no-build", *services] if services else [])],
                        env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield compose
    finally:
        if up.returncode == 0 and logs_of is not None:
            logs = subprocess.run([*compose, "logs", "--tail", "40", logs_of], env=env,
                                  capture_output=True, text=True, timeout=60)
            print(logs.stdout[-3000:])
        down = subprocess.run([*compose, "down", "-v"], env=env, capture_output=True,
                              text=True, timeout=300)
        assert down.returncode == 0, down.stderr[-3000:]
