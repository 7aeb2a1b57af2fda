"""Typed serde errors. All are poison (not retriable): the bytes will never decode.

Each error keeps the raw bytes so the dead-letter path can store them untouched.
"""

from __future__ import annotations

from stream.exceptions import StreaminferError


class SerdeError(StreaminferError):
    """A value could not be encoded or decoded."""

    retriable = False

    def __init__(self, message: str, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class NotSingleObjectError(SerdeError):
    """The bytes do not start with the Avro single-object marker C3 01 (or are too short)."""


class UnknownSchemaError(SerdeError):
    """The fingerprint names no schema version this process knows."""

    def __init__(self, message: str, raw: bytes | None, fingerprint: bytes) -> None:
        super().__init__(message, raw)
        self.fingerprint = fingerprint


class WrongRecordTypeError(SerdeError):
    """The fingerprint is known but belongs to another record type."""


class MalformedBodyError(SerdeError):
    """The header is fine but the body does not decode against the writer schema."""


class EncodeError(SerdeError):
    """A record does not fit the schema it is being written with."""
