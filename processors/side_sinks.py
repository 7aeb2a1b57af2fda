"""What the pipeline hands over after a batch, beside the predictions it returns: the
active version's answers to a shadow scorer, and every answer's served features to the
input recorder (the training data of :mod:`processors.retrain`)."""

from __future__ import annotations

from typing import Any, Protocol


class ShadowSink(Protocol):
    """Takes the active version's answers to score them again off the critical path."""

    def offer(self, active_version: str,
              rows: list[tuple[dict[str, Any], float, bytes | None]]) -> None: ...


# An answered request: (request after enrichment, score, version, key, fallback?, degraded).
Answered = tuple[dict[str, Any], float, str, bytes | None, bool, list[str]]


class InputSink(Protocol):
    """Records the features each request was answered with (for retraining)."""

    def record(self, rows: list[Answered]) -> None: ...
