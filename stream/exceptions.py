"""Root of the streaminfer exception tree.

Every error the project raises derives from :class:`StreaminferError`. Third-party
errors are wrapped with ``raise ... from exc`` so callers handle one family.
``retriable`` says whether trying the same thing again may succeed (transient) or
never will (poison / configuration).
"""

from __future__ import annotations


class StreaminferError(Exception):
    """Base class of every streaminfer error."""

    retriable: bool = False


class ConfigurationError(StreaminferError):
    """A setting is missing or invalid; the message names it and says what to do."""


class InfrastructureError(StreaminferError):
    """The local infrastructure (Docker engine, images, containers) is not usable."""


class KafkaOperationError(StreaminferError):
    """A Kafka operation failed (admin, produce, commit)."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable
