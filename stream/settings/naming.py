"""The environment variable and the flag of a setting."""

from __future__ import annotations

ENV_PREFIX = "STREAMINFER_"


def flag_of(field: str) -> str:
    """The command-line flag of a setting."""
    return "--" + field.replace("_", "-")


def env_of(field: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + field.upper()
