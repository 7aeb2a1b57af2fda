"""Field keys: named AES keys, one of them primary, from a JSON file or the environment.

    {"primary": "2026-12", "keys": {"2026-12": "<base64 of 32 bytes>",
                                    "2026-06": "<base64 of 32 bytes>"}}

Producers seal with the primary key; workers open with any key in the ring, so rotating
is: add the new key everywhere, make it primary, and retire the old one once nothing that
must stay readable (topics within retention, dead letters, backups) was sealed with it.
A :class:`FileKeySource` re-reads its file when it changes, so rotation needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from schemas.exceptions import StreaminferError

KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
KEY_BYTES = (16, 24, 32)  # AES-128/192/256; new keys are 32 bytes
RELOAD_CHECK_S = 1.0
log = logging.getLogger(__name__)


class KeyringError(StreaminferError):
    """The field keys cannot be read or are invalid (the message names the source)."""


@dataclass(frozen=True)
class Keyring:
    """Named keys and the one new data is sealed with."""

    keys: Mapping[str, bytes]
    primary: str | None
    source: str = "<memory>"

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """Read the JSON form; errors name the source and the bad entry (never a key)."""
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyringError(f"{source}: field keys are not JSON ({exc.msg} at line "
                               f"{exc.lineno}); expected {{\"primary\": ID, \"keys\": "
                               "{ID: BASE64}}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("keys"), dict):
            raise KeyringError(f"{source}: expected an object with a 'keys' object "
                               "({\"primary\": ID, \"keys\": {ID: BASE64}})")
        keys: dict[str, bytes] = {}
        for kid, encoded in raw["keys"].items():
            if not KEY_ID.match(kid):
                raise KeyringError(f"{source}: key id {kid[:70]!r} is not 1-64 characters of "
                                   "letters, digits, '.', '_' or '-'")
            try:
                key = base64.b64decode(str(encoded), validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"{source}: key {kid!r} is not base64") from None
            if len(key) not in KEY_BYTES:
                raise KeyringError(f"{source}: key {kid!r} is {len(key)} bytes; AES-GCM takes "
                                   "16, 24 or 32 (`streaminfer field-keys add` makes 32)")
            keys[kid] = key
        primary = raw.get("primary")
        if primary is not None and primary not in keys:
            raise KeyringError(f"{source}: primary {primary!r} is not one of the keys "
                               f"{sorted(keys)}")
        return cls(keys, primary, source)

    def to_json(self) -> str:
        """The JSON form (holds the key material: write it to a 0600 file only)."""
        return json.dumps({"primary": self.primary,
                           "keys": {k: base64.b64encode(v).decode()
                                    for k, v in self.keys.items()}}, indent=2) + "\n"

    def primary_key(self) -> tuple[str, bytes]:
        """The key id and key to seal with."""
        if self.primary is None:
            raise KeyringError(f"{self.source}: no primary key to seal with; choose one "
                               "with `streaminfer field-keys use ID`")
        return self.primary, self.keys[self.primary]

    def key(self, kid: str) -> bytes | None:
        """The key of that id, if this ring holds it."""
        return self.keys.get(kid)


class KeySource(Protocol):
    """Where the current key ring comes from."""

    def current(self) -> Keyring: ...

    def refresh(self) -> None: ...


@dataclass(frozen=True)
class StaticKeySource:
    """A key ring that never changes (from the environment, or in tests)."""

    ring: Keyring

    def current(self) -> Keyring:
        return self.ring

    def refresh(self) -> None:
        """Nothing to re-read."""


class FileKeySource:
    """A key file, re-read when it changes, so a rotated file takes effect without a
    restart. :meth:`refresh` looks now (the worker calls it once per batch: one ``stat``);
    :meth:`current` looks at most every ``interval`` seconds (producers, per request).
    A change is its inode, modification time or size: an atomic replace (what
    ``streaminfer field-keys`` and Kubernetes secret volumes do) always counts. A file
    that turns unreadable or invalid keeps the last good ring in use and is logged once
    per change (a half-edited file must not stop serving)."""

    def __init__(self, path: Path, interval: float = RELOAD_CHECK_S,
                 clock: Any = time.monotonic) -> None:
        self.path = path
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = clock()
        self.reloads = 0
        self._ring = self._load()

    def _stat(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _load(self) -> Keyring:
        try:
            stamp = self._stat()
            text = self.path.read_text()
        except OSError as exc:
            raise KeyringError(f"{self.path}: cannot read the field keys: {exc.strerror}; "
                               "check --field-keys-file") from None
        self._stamp = stamp
        return Keyring.parse(text, str(self.path))

    def current(self) -> Keyring:
        if self._clock() - self._checked >= self.interval:
            self.refresh()
        return self._ring

    def refresh(self) -> None:
        with self._lock:
            self._checked = self._clock()
            try:
                changed = self._stat() != self._stamp
            except OSError:
                changed = True
            if not changed:
                return
            try:
                self._ring = self._load()
            except KeyringError as exc:
                with contextlib.suppress(OSError):
                    self._stamp = self._stat()  # log once per change, not once per batch
                log.error("field keys not reloaded, still using the previous ones: %s", exc)
            else:
                self.reloads += 1
                log.info("field keys reloaded from %s: %s, primary %s", self.path,
                         sorted(self._ring.keys), self._ring.primary)


def loose_permissions(path: Path) -> bool:
    """Can users outside the owner and group read the key file? (Group read is how a
    Kubernetes secret volume reaches a non-root pod: ``fsGroup`` with mode 0440.)"""
    return bool(path.stat().st_mode & stat.S_IRWXO)


def write_keyring(path: Path, ring: Keyring) -> None:
    """Write atomically with mode 0600 (a reader never sees a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, ring.to_json().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
