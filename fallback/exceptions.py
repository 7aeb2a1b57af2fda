"""Errors of the degradation layer."""

from __future__ import annotations

from schemas.exceptions import StreaminferError


class DeadLetterError(StreaminferError):
    """A dead letter could not be built or written."""


class FallbackConfigError(StreaminferError):
    """The model's fallback section is invalid (names the file and field)."""
