"""Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body.

Self-describing, so a reader on a newer version reads data written with an older
one (and the reverse, where the schemas allow it). Encoders and decoders are plain
callables bound to one record type.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from schemas.exceptions import (
    EncodeError,
    MalformedBodyError,
    NotSingleObjectError,
    UnknownSchemaError,
    WrongRecordTypeError,
)
from schemas.fingerprints import SchemaRegistry, SchemaVersion, default_registry

MARKER = b"\xc3\x01"
HEADER_LEN = 10


class Encoder:
    """Writes records of one schema version (the newest by default)."""

    def __init__(
        self, name: str, version: int | None = None, registry: SchemaRegistry | None = None
    ) -> None:
        self.schema: SchemaVersion = (registry or default_registry()).get(name, version)
        self._header = MARKER + self.schema.fingerprint

    def __call__(self, record: dict[str, Any]) -> bytes:
        buf = BytesIO()
        buf.write(self._header)
        try:
            schemaless_writer(buf, self.schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(
                f"{self.schema.name} v{self.schema.version}: record does not fit the schema: {exc}"
            ) from exc
        return buf.getvalue()


class Decoder:
    """Reads records of one record type written with any known version of it.

    Records are resolved to ``reader_version`` (the newest by default), so callers see
    one shape whatever version the producer used.
    """

    def __init__(
        self, name: str, reader_version: int | None = None, registry: SchemaRegistry | None = None
    ) -> None:
        self._registry = registry or default_registry()
        self.reader: SchemaVersion = self._registry.get(name, reader_version)
        self.name = name

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The schema version that wrote ``data`` (checks the header only)."""
        if len(data) < HEADER_LEN or data[:2] != MARKER:
            head = data[:2].hex() or "empty"
            raise NotSingleObjectError(
                f"not an Avro single-object record: expected marker c301 and a 10-byte header, "
                f"got {len(data)} bytes starting {head}",
                raw=data,
            )
        fp = data[2:HEADER_LEN]
        writer = self._registry.by_fingerprint(fp)
        if writer is None:
            raise UnknownSchemaError(
                f"unknown schema fingerprint {fp.hex()} at bytes 2-9: no {self.name} version in "
                f"schemas/avsc has it (was it written with a newer, unshipped schema?)",
                raw=data,
                fingerprint=fp,
            )
        if writer.name != self.name:
            raise WrongRecordTypeError(
                f"expected a {self.name} record, got {writer.name} v{writer.version}", raw=data
            )
        return writer

    def __call__(self, data: bytes) -> dict[str, Any]:
        writer = self.writer_of(data)
        buf = BytesIO(data)
        buf.seek(HEADER_LEN)
        reader_schema = None if writer is self.reader else self.reader.parsed
        try:
            record = schemaless_reader(buf, writer.parsed, reader_schema)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
            raise MalformedBodyError(
                f"{self.name} v{writer.version} body does not decode at byte "
                f"{buf.tell()} of {len(data)}: {type(exc).__name__}: {exc}",
                raw=data,
            ) from exc
        if buf.tell() != len(data):
            raise MalformedBodyError(
                f"{self.name} v{writer.version}: {len(data) - buf.tell()} unexpected trailing "
                f"bytes after byte {buf.tell()}",
                raw=data,
            )
        if not isinstance(record, dict):
            raise MalformedBodyError(f"{self.name}: decoded a non-record value", raw=data)
        return record
