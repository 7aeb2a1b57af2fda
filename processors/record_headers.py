"""What the pipeline reads from a record's headers: the attempt number and named values
such as the field key id (the replay marker: processors.replay_marker)."""

from __future__ import annotations

from fallback.deadletter import SourceRecord, header_list, header_value


def header_text(record: SourceRecord, name: str) -> str | None:
    """A header's value as text, or None when absent."""
    value = header_value(record.headers(), name)
    return None if value is None else value.decode("utf-8", errors="replace")


def attempt_of(record: SourceRecord) -> int:
    """The attempt number in the ``streaminfer.attempt`` header (set by replay), else 1."""
    for key, value in header_list(record.headers()):
        if key == "streaminfer.attempt" and value:
            try:
                return max(1, int(value))
            except ValueError:
                return 1
    return 1
