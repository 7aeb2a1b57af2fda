"""Settings to and from the environment: flags and variables of a field, the environment
of a subprocess, and loading with errors that name the flag and the variable."""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr, ValidationError

from stream.exceptions import ConfigurationError
from stream.settings.naming import ENV_PREFIX, env_of, flag_of
from stream.settings.paths import dev_env_file
from stream.settings.root import Settings


def to_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes a ``streaminfer`` subprocess use these settings (the
    current environment without its STREAMINFER_* variables, except STREAMINFER_HOME).

    Secrets are included in clear: an environment is handed to the child in memory and
    is readable only by the same user (``/proc/<pid>/environ``); never print or store
    the returned mapping."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(ENV_PREFIX) or k == "STREAMINFER_HOME"}
    values = settings.model_dump()
    values.update(overrides)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[env_of(name)] = str(value)
    return env


def load_settings(**overrides: Any) -> Settings:
    """Build settings from flags (``overrides``; None means unset), env and the dev env file.

    Raises :class:`ConfigurationError` naming each bad setting with its flag and variable.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    env_file = dev_env_file()
    try:
        return Settings(_env_file=env_file if env_file.exists() else None, **given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if loc:
                lines.append(
                    f"  {loc} ({flag_of(loc)} / {env_of(loc)}): {err['msg']}"
                    f" (got {err.get('input')!r})"
                )
            else:
                lines.append(f"  {err['msg']}")
        raise ConfigurationError(
            "invalid settings:\n" + "\n".join(lines)
            + "\nfix the flag or environment variable named above "
            f"(the dev cluster's values come from {env_file})"
        ) from exc
