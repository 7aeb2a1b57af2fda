"""Typed settings. Every field has a ``STREAMINFER_<FIELD>`` environment twin and,
where a command uses it, a ``--field-name`` flag (see :mod:`stream.cli.options`).

Precedence: command-line flag > environment > the dev cluster's env file (written by
``streaminfer dev up``) > default. Invalid values stop start-up with a message that
names the setting, its flag and its variable.

The fields are grouped in sections (:mod:`stream.settings.sections`: kafka, security,
worker, serving, features, lifecycle, regions, observability, devcluster); ``Settings``
inherits them all, so the variable and flag names stay flat and unchanged.
"""

from stream.settings.environment import load_settings, to_env
from stream.settings.naming import ENV_PREFIX, env_of, flag_of
from stream.settings.paths import dev_env_file, state_dir
from stream.settings.root import SECTIONS, Settings, section_of
from stream.settings.sections import Guarantee, SecurityProtocol
from stream.settings.timeouts import SETTLE_MARGIN_MS, blocking_budget_ms, timeout_chain

__all__ = [
    "ENV_PREFIX", "SECTIONS", "SETTLE_MARGIN_MS", "Guarantee", "SecurityProtocol", "Settings",
    "blocking_budget_ms", "dev_env_file", "env_of", "flag_of", "load_settings", "section_of",
    "state_dir", "timeout_chain", "to_env",
]
