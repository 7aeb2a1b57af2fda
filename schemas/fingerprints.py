"""The schema versions shipped in ``schemas/avsc`` and their fingerprints.

Files are named ``<RecordName>.v<N>.avsc``. Each version is identified on the wire
by the CRC-64-AVRO (Rabin) fingerprint of its Parsing Canonical Form, as the Avro
single-object encoding prescribes; readers resolve any known writer version
against the newest version of the same record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.exceptions import SerdeError

AVSC_DIR = Path(__file__).parent / "avsc"
_FILE_RE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema."""

    name: str
    version: int
    fingerprint: bytes  # 8 bytes, little-endian, as written after the C3 01 marker
    parsed: dict[str, Any]
    path: Path


def rabin_fingerprint(schema: dict[str, Any] | str) -> bytes:
    """CRC-64-AVRO fingerprint (8 little-endian bytes) of a schema's canonical form."""
    canonical = to_parsing_canonical_form(schema)
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


class SchemaRegistry:
    """All schema versions found in a folder, indexed by fingerprint and by name."""

    def __init__(self, folder: Path = AVSC_DIR) -> None:
        self._by_fp: dict[bytes, SchemaVersion] = {}
        self._by_name: dict[str, dict[int, SchemaVersion]] = {}
        for path in sorted(folder.glob("*.avsc")):
            match = _FILE_RE.match(path.name)
            if not match:
                raise SerdeError(f"{path}: schema files must be named <Record>.v<N>.avsc")
            raw = json.loads(path.read_text())
            parsed = parse_schema(raw, _write_hint=False)
            if not isinstance(parsed, dict):
                raise SerdeError(f"{path}: top level must be a record schema")
            fp = rabin_fingerprint(raw)
            version = SchemaVersion(match["name"], int(match["version"]), fp, parsed, path)
            if fp in self._by_fp:
                raise SerdeError(f"{path}: same canonical form as {self._by_fp[fp].path}")
            self._by_fp[fp] = version
            self._by_name.setdefault(version.name, {})[version.version] = version

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        """The version written with this fingerprint, if known."""
        return self._by_fp.get(fp)

    def get(self, name: str, version: int | None = None) -> SchemaVersion:
        """A named record's version (the newest when ``version`` is None)."""
        versions = self._by_name.get(name)
        if not versions:
            raise SerdeError(f"no schema named {name!r} in {AVSC_DIR}; known: {self.names()}")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise SerdeError(f"{name} has no version {version}; known: {sorted(versions)}")
        return versions[version]

    def names(self) -> list[str]:
        """Record names with at least one version."""
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        """All versions of a record, oldest first."""
        return [v for _, v in sorted(self._by_name.get(name, {}).items())]


@cache
def default_registry() -> SchemaRegistry:
    """The registry of the schemas shipped with streaminfer (loaded once)."""
    return SchemaRegistry()
