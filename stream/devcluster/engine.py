"""Make sure a Docker engine answers, installing and starting one where permitted.

On the project's machines no engine runs by default; Debian's ``docker.io`` package
provides one. We only install and start it when running as root on Debian, and we
say so; everywhere else we explain what the user has to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from stream.devcluster.progress import say, step
from stream.exceptions import InfrastructureError

DOCKERD_LOG = Path("/var/log/streaminfer-dockerd.log")
DOCKERD_PIDFILE = Path("/var/run/streaminfer-dockerd.pid")


def engine_running() -> bool:
    """True when ``docker info`` answers."""
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def _is_debian_root() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists()


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with step(f"installing {' '.join(packages)} from Debian packages"):
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", *packages], check=True, env=env, capture_output=True
        )


def ensure_engine(deadline_s: float = 60.0) -> bool:
    """Ensure a Docker engine answers. Returns True when this call started one."""
    if engine_running():
        return False
    if not _is_debian_root():
        raise InfrastructureError(
            "no Docker engine answers `docker info`. Start Docker (for example "
            "`sudo systemctl start docker`) or run this command as root on Debian, where "
            "streaminfer installs Debian's docker.io package and starts dockerd itself."
        )
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        say("no Docker engine found: installing Debian's docker.io (root on Debian)")
        _apt_install(["docker.io"])
    say(f"starting dockerd (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as log:
        proc = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    DOCKERD_PIDFILE.write_text(str(proc.pid))
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise InfrastructureError(
                f"dockerd exited with code {proc.returncode}; read {DOCKERD_LOG} for the cause"
            )
        if engine_running():
            say(f"dockerd is up (pid {proc.pid})")
            return True
        time.sleep(0.5)
    raise InfrastructureError(
        f"dockerd did not answer within {deadline_s:.0f}s; read {DOCKERD_LOG} for the cause"
    )


def ensure_compose() -> list[str]:
    """A compose command for ``compose/*.yml``: ``docker compose`` (v2 plugin) when the
    client has it, else ``docker-compose``; on Debian as root, Debian's docker-compose
    (1.29, the only one packaged) is installed when neither is there."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None:
        if not _is_debian_root():
            raise InfrastructureError(
                "neither `docker compose` nor `docker-compose` is installed: install one "
                "(Debian: apt-get install docker-compose)")
        _apt_install(["docker-compose"])
    return ["docker-compose"]


def stop_engine_we_started() -> None:
    """Stop the dockerd this project started (by the pid it recorded), if any."""
    if not DOCKERD_PIDFILE.exists():
        return
    pid = int(DOCKERD_PIDFILE.read_text().strip() or 0)
    DOCKERD_PIDFILE.unlink(missing_ok=True)
    if pid <= 0:
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
