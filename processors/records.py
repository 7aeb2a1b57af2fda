"""Frozen message types passed between the pipeline and the Kafka adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from processors.arms import ArmFigures
    from processors.features.enrich import EnrichStats

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
    kind: str = ""  # fallback kind, or the dead letter's stage; "" for model predictions
    created_at: int | None = None  # request created_at (epoch ms) when known
    digest: str | None = None  # of the request's bytes (duplicate suppression), predictions


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Everything one batch produced; one Outbound per consumed record."""

    outbound: list[Outbound]
    model: int
    fallback: int
    dead_letters: int
    scores: list[float] = field(default_factory=list)  # the model's scores in this batch
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    fallback_reasons: dict[str, int] = field(default_factory=dict)  # reason -> count
    model_scores: list[tuple[str, float]] = field(default_factory=list)  # (entity, score)
    enrich_stats: EnrichStats | None = None  # when the model reads stored features
    arms: dict[str, ArmFigures] = field(default_factory=dict)  # role -> figures
    # Indices of outbound records not to send: predictions of requests answered already
    # (processors.dedupe). Kept in place so outbound[i] still belongs to the batch's record i.
    skipped: frozenset[int] = frozenset()
    # Unexpected errors met while answering the batch: scope ("batch", "record") -> count.
    internal_errors: dict[str, int] = field(default_factory=dict)
    # Replay markers met: verdict (signed, unsigned, unknown_key, bad_signature) -> count.
    replay_markers: dict[str, int] = field(default_factory=dict)

    def sent(self) -> list[Outbound]:
        """The outbound records that are produced."""
        if not self.skipped:
            return self.outbound
        return [o for i, o in enumerate(self.outbound) if i not in self.skipped]
