"""Redis ACL users made to match the declaration (``ACL SETUSER``), with the passwords
from a folder of ``<principal>.password`` files.

Redis rewrites rules into its own canonical form, so the comparison is done by Redis:
the wanted rules are set on a probe user that is never enabled (``off``), and its
``ACL GETUSER`` is compared with the real user's; the probe is removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from stream.access.declaration import Declaration
from stream.exceptions import ConfigurationError, InfrastructureError

PROBE = "streaminfer-acl-probe"


@dataclass(frozen=True)
class UserChange:
    """One Redis user that differs from the declaration."""

    name: str
    reason: str  # "missing", "disabled", "rules differ", "password differs", ...
    rules: tuple[str, ...]
    with_password: bool = True  # False: a user turned off, which takes no password


def password_of(passwords: Path, name: str) -> str:
    """The password of ``name`` from ``<passwords>/<name>.password``."""
    path = passwords / f"{name}.password"
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"no password for principal {name!r}: cannot read {path} ({exc.strerror}); pass "
            "--passwords-dir with one <principal>.password file per principal") from exc


def _rules(principal_rules: tuple[str, ...], super_user: bool) -> list[str]:
    return ["reset", "on", *(["~*", "&*", "+@all"] if super_user and not principal_rules
                              else principal_rules)]


def _norm(user: Any) -> dict[str, Any]:
    """The rule parts of ACL GETUSER's answer (redis-py gives a dict): keys, channels,
    commands, categories, selectors and flags other than on/off, order-free."""
    out: dict[str, Any] = {}
    for k in ("keys", "channels", "commands", "categories", "selectors"):
        v = (user or {}).get(k) or []
        out[k] = sorted(map(str, v))
    out["flags"] = sorted(f for f in (user or {}).get("flags") or [] if f not in ("on", "off"))
    return out


def _enabled(user: Any) -> bool:
    flags: Any = user.get("flags") or []
    return "on" in flags


def diff(declaration: Declaration, client: redis.Redis, passwords: Path) -> list[UserChange]:
    """Declared users that are missing or differ in rules, flags or password."""
    changes = []
    try:
        for name, p in declaration.principals.items():
            if p.redis is None and not p.super_user:
                continue
            rules = tuple(_rules(p.redis or (), p.super_user))
            wanted_hash = hashlib.sha256(password_of(passwords, name).encode()).hexdigest()
            client.execute_command("ACL", "SETUSER", PROBE, *rules, "off")
            probe = _norm(client.acl_getuser(PROBE))
            actual_raw = client.acl_getuser(name)
            if actual_raw is None:
                changes.append(UserChange(name, "missing", rules))
                continue
            actual = _norm(actual_raw)
            if not _enabled(actual_raw):
                changes.append(UserChange(name, "disabled", rules))
                continue
            hashes: Any = actual_raw.get("passwords") or []
            if wanted_hash not in hashes:
                changes.append(UserChange(name, "password differs", rules))
            elif len(hashes) > 1:  # a second password opens the same door
                changes.append(UserChange(name, f"{len(hashes) - 1} extra password(s)", rules))
            elif probe != actual:
                changes.append(UserChange(name, "rules differ", rules))
        default = client.acl_getuser("default")
        if ("default" not in declaration.principals and default is not None
                and _enabled(default)):
            changes.append(UserChange("default", "enabled: anyone reaching Redis acts as it",
                                      ("reset", "off"), with_password=False))
    except redis.RedisError as exc:
        raise InfrastructureError(f"could not read Redis' ACL users: {exc}. Connect as a user "
                                  "allowed ACL commands (the admin principal)") from exc
    finally:
        with contextlib.suppress(redis.RedisError):
            client.acl_deluser(PROBE)
    return changes


def apply(changes: list[UserChange], client: redis.Redis, passwords: Path) -> None:
    """Set each changed user's rules and password (``reset`` first, so nothing stale stays)."""
    for change in changes:
        try:
            secret = ([f">{password_of(passwords, change.name)}"] if change.with_password
                      else [])
            client.execute_command("ACL", "SETUSER", change.name, *change.rules, *secret)
        except redis.RedisError as exc:
            raise InfrastructureError(f"Redis refused ACL SETUSER {change.name}: {exc}") from exc


def save_if_file(client: redis.Redis) -> bool:
    """``ACL SAVE`` when Redis keeps its users in an aclfile (so a restart keeps them);
    False when it has none."""
    try:
        client.execute_command("ACL", "SAVE")
    except redis.ResponseError:
        return False  # "This Redis instance is not configured to use an ACL file"
    return True
