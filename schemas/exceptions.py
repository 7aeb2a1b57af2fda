"""The root of the streaminfer exception tree, and the typed serde errors.

Every error the project raises derives from :class:`StreaminferError`, defined here at
the bottom layer so that every package can import it without importing upward.
Third-party errors are wrapped with ``raise ... from exc`` so callers handle one family.
``retriable`` says whether trying the same thing again may succeed (transient) or never
will (poison / configuration).

Serde errors are all poison (not retriable): the bytes will never decode. Each keeps
the raw bytes so the dead-letter path can store them untouched.
"""

from __future__ import annotations


class StreaminferError(Exception):
    """Base class of every streaminfer error."""

    retriable: bool = False


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
