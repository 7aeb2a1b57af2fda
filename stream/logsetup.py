"""Logging set-up shared by the commands (structured JSON logs come with observability)."""

from __future__ import annotations

import logging
import os


def configure(level: str) -> None:
    """One line per event on stderr, with the process id (workers run as several processes)."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=f"%(asctime)s %(levelname)s [pid {os.getpid()}] %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("testcontainers").setLevel(logging.WARNING)
