"""Where this host's workers serve their metrics, so `streaminfer status` can find them.

A worker with a health port writes ``$STREAMINFER_HOME/workers/<worker_id>.json`` and
removes it when it stops. Workers on other hosts are named to ``status`` with
``--metrics-url``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from stream.settings import Settings, state_dir


def workers_dir() -> Path:
    """The folder of announcement files."""
    return state_dir() / "workers"


def announce(settings: Settings, worker_id: str, url: str) -> None:
    """Record this worker's metrics URL."""
    folder = workers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {"worker_id": worker_id, "metrics_url": url, "pid": os.getpid(),
              "namespace": settings.namespace, "group": settings.group,
              "started_at": time.time()}
    tmp = folder / f".{worker_id}.json.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(folder / f"{worker_id}.json")


def withdraw(worker_id: str) -> None:
    """Remove this worker's record."""
    (workers_dir() / f"{worker_id}.json").unlink(missing_ok=True)


def announced(group: str) -> list[dict[str, Any]]:
    """Records of live workers of ``group`` on this host (stale files are removed)."""
    out: list[dict[str, Any]] = []
    folder = workers_dir()
    if not folder.exists():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            os.kill(int(record["pid"]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            continue
        except (OSError, ValueError, KeyError):
            continue
        if record.get("group") == group:
            out.append(record)
    return out
