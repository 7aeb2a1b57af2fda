"""Dead-letter tools: inspect (grouped by stage and error) and replay after a fix.

Replay re-injects a dead letter's original key, value bytes and headers into its
original topic (the request keeps its request_id), adding ``streaminfer.replay_of``
(``<dlq topic>:<partition>:<offset>``) and ``streaminfer.attempt`` (the attempt count
plus one); with ``--replay-signing-key`` also ``streaminfer.replay_sig``, which makes
workers that trust the key answer the request even past its deadline
(:mod:`processors.replay_marker`). Every replayed dead letter is recorded in Redis (``<ns>:dlq:replayed``), so
replaying twice never sends the same dead letter twice, and reads stop at the DLQ's end
as it was when the command started, so new dead letters cannot feed a replay loop.

Replay sends only what can succeed: a dead letter of stage ``decode`` holds bytes no
reader understood, and the same bytes fail the same way, so those are skipped unless
``--stage decode`` asks for them (after shipping a schema that reads them); and a request
dead-lettered ``max_attempts`` times already is left alone. The report says how many
were skipped and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from processors.registry.signing import load_private
from processors.replay_marker import ATTEMPT, REPLAY_OF, REPLAY_SIG, sign_marker
from processors.sealing.envelope import KEY_ID_HEADER
from stream.clients import ReadRecord, RequestProducer, TopicReader
from stream.connect.exposure import redact_url
from stream.connect.redis_pool import make_redis
from stream.exceptions import InfrastructureError
from stream.settings import Settings


@dataclass
class Group:
    """Dead letters sharing a stage and error type."""

    stage: str
    error_type: str
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    sample: str = ""
    request_ids: list[str] = field(default_factory=list)


def read_dead_letters(settings: Settings, timeout: float) -> Iterator[ReadRecord]:
    """Every decodable dead letter currently in the DLQ (stops after ``timeout`` idle)."""
    # A group within the DLQ operator's grant (<ns>.dlq.*): the read assigns partitions
    # and needs none, but librdkafka looks its coordinator up all the same.
    for record in TopicReader(settings, settings.dlq_topic, timeout=timeout,
                              from_beginning=True, until_end=True,
                              group=f"{settings.namespace}.dlq.{uuid.uuid4().hex[:8]}"):
        if record.value is not None:
            yield record


def inspect(settings: Settings, timeout: float = 5.0) -> list[Group]:
    """Dead letters grouped by (stage, error type), biggest group first."""
    groups: dict[tuple[str, str], Group] = {}
    for record in read_dead_letters(settings, timeout):
        v = record.value or {}
        key = (v["stage"], v["error_type"])
        g = groups.setdefault(key, Group(*key, first_ms=v["failed_at"],
                                         sample=v["error_message"][:200]))
        g.count += 1
        g.first_ms = min(g.first_ms, v["failed_at"])
        g.last_ms = max(g.last_ms, v["failed_at"])
        if v.get("request_id") and len(g.request_ids) < 3:
            g.request_ids.append(v["request_id"])
    return sorted(groups.values(), key=lambda g: -g.count)


UNREPLAYABLE_STAGES = ("decode",)  # the same bytes fail the same way
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay (all given criteria must hold)."""

    stages: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()
    max_attempts: int = MAX_ATTEMPTS

    def skip_reason(self, v: dict[str, Any]) -> str | None:
        """Why a selected dead letter is not replayed: "unreplayable" (its stage fails the
        same way again, unless asked for by --stage) or "attempts" (tried enough)."""
        if v["stage"] in UNREPLAYABLE_STAGES and v["stage"] not in self.stages:
            return "unreplayable"
        if int(v.get("attempt", 1)) >= self.max_attempts:
            return "attempts"
        return None

    def matches(self, v: dict[str, Any]) -> bool:
        """Does this dead letter fall in the selection?"""
        return ((not self.stages or v["stage"] in self.stages)
                and (not self.error_types or v["error_type"] in self.error_types)
                and (not self.request_ids or v.get("request_id") in self.request_ids))


@dataclass
class ReplayReport:
    """What a replay found and did."""

    scanned: int = 0
    selected: int = 0
    already_replayed: int = 0
    replayed: int = 0
    skipped_unreplayable: int = 0  # stage decode: the same bytes would fail again
    skipped_attempts: int = 0  # dead-lettered max_attempts times already

    def summary(self, dry_run: bool) -> str:
        """One line for the operator."""
        verb = "would replay" if dry_run else "replayed"
        done = (self.selected - self.already_replayed - self.skipped_unreplayable
                - self.skipped_attempts) if dry_run else self.replayed
        out = (f"scanned {self.scanned} dead letters, {self.selected} selected, "
               f"{self.already_replayed} already replayed before, {verb} {done}")
        if self.skipped_unreplayable:
            out += (f"; skipped {self.skipped_unreplayable} of stage decode (the same bytes "
                    "fail again; --stage decode replays them after a schema fix)")
        if self.skipped_attempts:
            out += f"; skipped {self.skipped_attempts} tried --max-attempts times already"
        return out


def replay(settings: Settings, selection: Selection, dry_run: bool, timeout: float = 5.0,
           target: str | None = None) -> ReplayReport:
    """Re-inject the selected dead letters (once each); with ``dry_run`` only count them."""
    client = make_redis(settings, timeout_s=2.0)
    ledger = f"{settings.namespace}:dlq:replayed"
    try:
        client.ping()
    except redis.RedisError as exc:
        raise InfrastructureError(
            f"replay needs Redis at {redact_url(settings.redis_url)} to remember what it replayed "
            f"({exc}); start it or point --redis-url at it") from exc
    report = ReplayReport()
    producer = None if dry_run else RequestProducer(settings, topic=target)
    signer = (load_private(settings.replay_signing_key)
              if settings.replay_signing_key is not None else None)
    for record in read_dead_letters(settings, timeout):
        report.scanned += 1
        v = record.value or {}
        if not selection.matches(v):
            continue
        report.selected += 1
        coordinate = f"{record.topic}:{record.partition}:{record.offset}"
        if client.sismember(ledger, coordinate):
            report.already_replayed += 1
            continue
        why = selection.skip_reason(v)
        if why == "unreplayable":
            report.skipped_unreplayable += 1
            continue
        if why == "attempts":
            report.skipped_attempts += 1
            continue
        if producer is None:
            continue
        headers = [(h["key"], h["value"]) for h in v.get("headers", [])  # the key id stays
                   if not h["key"].startswith("streaminfer.") or h["key"] == KEY_ID_HEADER]
        attempt = str(int(v.get("attempt", 1)) + 1).encode()
        key, value = v.get("key"), v.get("value") or b""
        headers += [(REPLAY_OF, coordinate.encode()), (ATTEMPT, attempt)]
        if signer is not None:
            headers.append((REPLAY_SIG, sign_marker(signer, coordinate.encode(), attempt,
                                                    key, value)))
        producer.topic = target or v["topic"]
        producer.send_raw(key, value, headers=headers)
        producer.flush()  # durable before it is marked replayed
        client.sadd(ledger, coordinate)
        report.replayed += 1
    return report
