"""Where settings come from on this host: the env prefix, the state directory, the dev
cluster's env file."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Where ``dev up`` records the running cluster (``STREAMINFER_HOME``, default ~/.streaminfer)."""
    return Path(os.environ.get("STREAMINFER_HOME", Path.home() / ".streaminfer"))


def dev_env_file() -> Path:
    """The env file ``dev up`` writes and every other command reads."""
    return state_dir() / "dev.env"
