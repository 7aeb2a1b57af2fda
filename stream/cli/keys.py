"""`streaminfer field-keys add|use|retire|list`: the key ring that seals sensitive request
features (processors/sealing). Key material is written to the 0600 file only, never shown."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import click

from stream.cli.options import resolve, settings_options

FILE = ("field_keys_file", "log_level")


def _path(kwargs: dict[str, Any]) -> Path:
    s = resolve(kwargs, FILE)
    if s.field_keys_file is None:
        raise click.UsageError("say which key file: --field-keys-file PATH (or "
                               "STREAMINFER_FIELD_KEYS_FILE)")
    return s.field_keys_file


def _ring(path: Path) -> Any:
    from processors.sealing.keyring import Keyring

    if not path.exists():
        return Keyring({}, None, str(path))
    return Keyring.parse(path.read_text(), str(path))


@click.group("field-keys")
def field_keys() -> None:
    """Keys that seal sensitive request features. Rotate: `add` a key, give the file to
    workers first, then `use` it (producers seal with it from then on); `retire` the old
    key once nothing you must still read was sealed with it (topics within retention,
    dead letters, backups)."""


@field_keys.command("add")
@click.option("--id", "kid", default=None, help="Key id (default: the UTC date and time).")
@click.option("--primary/--no-primary", default=None,
              help="Seal with the new key from now on (default: only when it is the first).")
@settings_options(*FILE)
def add(kid: str | None, primary: bool | None, **kwargs: Any) -> None:
    """Add a new random 256-bit key to the key file (created with mode 0600)."""
    from processors.sealing.keyring import KEY_ID, Keyring, write_keyring

    path = _path(kwargs)
    ring = _ring(path)
    kid = kid or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if not KEY_ID.match(kid):
        raise click.BadParameter("1-64 letters, digits, '.', '_' or '-'", param_hint="--id")
    if kid in ring.keys:
        raise click.ClickException(f"{path} already has a key {kid!r}; choose another --id")
    keys = {**ring.keys, kid: os.urandom(32)}
    make_primary = primary if primary is not None else ring.primary is None
    write_keyring(path, Keyring(keys, kid if make_primary else ring.primary, str(path)))
    role = "primary (producers seal with it)" if make_primary else (
        f"not primary yet: give the file to every worker, then `streaminfer field-keys use "
        f"{kid}`")
    click.echo(f"added key {kid} to {path}: {role}")


@field_keys.command("use")
@click.argument("kid")
@settings_options(*FILE)
def use(kid: str, **kwargs: Any) -> None:
    """Make KID the primary key: producers seal with it from their next reload."""
    from processors.sealing.keyring import Keyring, write_keyring

    path = _path(kwargs)
    ring = _ring(path)
    if kid not in ring.keys:
        raise click.ClickException(f"{path} has no key {kid!r} (it has "
                                   f"{', '.join(sorted(ring.keys)) or 'none'})")
    write_keyring(path, Keyring(ring.keys, kid, str(path)))
    click.echo(f"{kid} is now the primary key in {path}")


@field_keys.command("retire")
@click.argument("kid")
@settings_options(*FILE)
def retire(kid: str, **kwargs: Any) -> None:
    """Remove KID: records sealed with it can no longer be opened (they dead-letter with
    stage decrypt). Refused for the primary key."""
    from processors.sealing.keyring import Keyring, write_keyring

    path = _path(kwargs)
    ring = _ring(path)
    if kid not in ring.keys:
        raise click.ClickException(f"{path} has no key {kid!r}")
    if kid == ring.primary:
        raise click.ClickException(f"{kid} is the primary key: `use` another one first")
    write_keyring(path, Keyring({k: v for k, v in ring.keys.items() if k != kid},
                                ring.primary, str(path)))
    click.echo(f"retired key {kid} from {path}")


@field_keys.command("list")
@settings_options(*FILE)
def list_keys(**kwargs: Any) -> None:
    """Key ids, sizes and which is primary (never the key material)."""
    path = _path(kwargs)
    ring = _ring(path)
    if not ring.keys:
        click.echo(f"{path}: no keys (`streaminfer field-keys add` makes one)")
        return
    for kid, key in ring.keys.items():
        fingerprint = hashlib.sha256(key).hexdigest()[:8]  # tells keys apart, reveals nothing
        mark = "  primary" if kid == ring.primary else ""
        click.echo(f"{kid}  AES-{len(key) * 8}  sha256:{fingerprint}{mark}")
