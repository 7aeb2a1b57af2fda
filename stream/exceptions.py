"""Errors of the Kafka runtime and the program. The root, :class:`StreaminferError`,
lives at the bottom layer (``schemas.exceptions``) and is re-exported here."""

from __future__ import annotations

from schemas.exceptions import StreaminferError

__all__ = ["ConfigurationError", "InfrastructureError", "KafkaOperationError",
           "KafkaUnreachableError", "StreaminferError", "UnknownTopicError"]


class ConfigurationError(StreaminferError):
    """A setting is missing or invalid; the message names it and says what to do."""


class InfrastructureError(StreaminferError):
    """The local infrastructure (Docker engine, images, containers) is not usable."""


class KafkaOperationError(StreaminferError):
    """A Kafka operation failed (admin, produce, commit)."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class KafkaUnreachableError(KafkaOperationError):
    """Kafka did not answer at the configured address within the connect timeout."""


class KafkaRefusedError(KafkaOperationError):
    """Kafka answered but refused the client: credentials, TLS or security protocol."""


class UnknownTopicError(ConfigurationError):
    """A topic (or a whole namespace) a command was pointed at does not exist."""
