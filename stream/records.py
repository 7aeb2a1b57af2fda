"""Frozen message types passed between the pipeline and the Kafka adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["model", "fallback", "dead_letter"]


@dataclass(frozen=True, slots=True)
class Outbound:
    """A record to produce, with the outcome it accounts for."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]]
    outcome: Outcome
    request_id: str | None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Everything one batch produced; one Outbound per consumed record."""

    outbound: list[Outbound]
    model: int
    fallback: int
    dead_letters: int
