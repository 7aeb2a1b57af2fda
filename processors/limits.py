"""Limits on what one request may hold, checked before any work is spent on it.

Before decoding: the message's size and its number of headers. The Avro decoder reads
only what the bytes hold (a length prefix claiming 2^31 map entries or a 2 GB string fails
at the end of the message, allocating nothing: tests/unit/test_limits.py measures it), so
the size limit bounds decoding. Right after decoding, before triage, features or
inference: the number of features and the length of every string (ids, model name, trace
id, feature names). A request over a limit is dead-lettered with stage ``limits`` and an
error naming the limit, its value and the setting that changes it; its partition moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.exceptions import SerdeError

STRING_FIELDS = ("request_id", "entity_id", "model", "trace_id")


class LimitExceeded(SerdeError):
    """A request is over one of the limits (the message names which)."""


@dataclass(frozen=True)
class Limits:
    """The limits (settings of the same names)."""

    max_message_bytes: int = 65_536
    max_headers: int = 32
    max_features: int = 1_024
    max_string_bytes: int = 1_024

    def check_raw(self, size: int, headers: int) -> None:
        """Before decoding: the message's size and header count."""
        if size > self.max_message_bytes:
            raise LimitExceeded(f"the message is {size:,} bytes, over max_message_bytes "
                                f"({self.max_message_bytes:,}; --max-message-bytes)")
        if headers > self.max_headers:
            raise LimitExceeded(f"the message has {headers} headers, over max_headers "
                                f"({self.max_headers}; --max-headers)")

    def check_request(self, request: dict[str, Any]) -> None:
        """After decoding, before any other work: features and string lengths."""
        features = request.get("features") or {}
        if len(features) > self.max_features:
            raise LimitExceeded(f"the request has {len(features):,} features, over "
                                f"max_features ({self.max_features:,}; --max-features)")
        for name in STRING_FIELDS:
            value = request.get(name)
            if isinstance(value, str) and len(value.encode()) > self.max_string_bytes:
                raise LimitExceeded(f"{name} is {len(value.encode()):,} bytes, over "
                                    f"max_string_bytes ({self.max_string_bytes:,}; "
                                    "--max-string-bytes)")
        for key in features:
            if len(key.encode()) > self.max_string_bytes:
                raise LimitExceeded(f"feature name {key[:40]!r}... is {len(key.encode()):,} "
                                    f"bytes, over max_string_bytes ({self.max_string_bytes:,}; "
                                    "--max-string-bytes)")
