"""Region decisions, subscriptions and the de-duplicating answer reader, without Kafka."""

from __future__ import annotations

import re
from collections import deque
from typing import Any, cast

import pytest
import redis

from fallback.breaker import BreakerConfig, CircuitBreaker
from fallback.redis_client import RedisClient
from processors.dedupe import AnsweredStore
from stream.clients import ReadRecord
from stream.exceptions import ConfigurationError
from stream.regions.answers import FirstSeen, UniqueCounts, digest_of, unique
from stream.regions.monitor import RegionMonitor
from stream.regions.policy import parse_region_redis
from stream.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def monitor(clock: Clock, down_after: float = 3.0, failback_after: float = 10.0
            ) -> RegionMonitor:
    settings = Settings(region_down_after_s=down_after,
                        region_failback_after_s=failback_after)
    return RegionMonitor(settings, {"east": "e:9092", "west": "w:9092"}, clock=clock,
                         probe=False)


def test_a_region_is_down_only_after_the_configured_silence() -> None:
    clock = Clock()
    m = monitor(clock)
    m.record("east", True)
    m.record("west", True)
    clock.now += 2.9
    m.record("east", False, "timeout")
    assert not m.is_down("east")
    assert m.choose("east") is None
    clock.now += 0.2  # 3.1 s since east's last answer
    m.record("west", True)
    assert m.is_down("east")
    move = m.choose("east")
    assert move is not None
    assert (move.kind, move.source, move.target) == ("failover", "east",
                                                                          "west")
    assert "3 s" in move.reason


def test_no_move_when_no_other_region_answers() -> None:
    clock = Clock()
    m = monitor(clock)
    clock.now += 5
    assert m.is_down("east")
    assert m.choose("east") is None


def test_failback_waits_for_unbroken_health_of_the_preferred_region() -> None:
    clock = Clock()
    m = monitor(clock, failback_after=10.0)
    m.record("west", True)
    m.record("east", True)
    clock.now += 6
    m.record("east", False)  # a failed probe restarts the healthy period
    m.record("east", True)
    m.record("west", True)
    clock.now += 9
    m.record("east", True)
    m.record("west", True)
    assert m.choose("west") is None  # 9 s of unbroken answers < 10
    clock.now += 1.5
    m.record("east", True)
    m.record("west", True)
    move = m.choose("west")
    assert move is not None
    assert (move.kind, move.target) == ("failback", "east")
    assert m.choose("east") is None  # already in the preferred region


def test_state_changes_are_reported_once() -> None:
    clock = Clock()
    seen: list[tuple[str, bool]] = []
    m = monitor(clock)
    m.on_change = lambda name, up: seen.append((name, up))
    m.record("east", True)
    clock.now += 4
    m.record("east", False)
    m.record("east", False)
    m.record("east", True)
    assert seen == [("east", False), ("east", True)]


def test_region_redis_spec_names_known_regions() -> None:
    assert parse_region_redis("east=redis://a:1; west=redis://b:2", ["east", "west"]) == {
        "east": "redis://a:1", "west": "redis://b:2"}
    assert parse_region_redis(None, ["east"]) == {}
    with pytest.raises(ConfigurationError, match="north=redis://c:3"):
        parse_region_redis("north=redis://c:3", ["east", "west"])


def test_subscription_matches_local_and_mirrored_requests_only() -> None:
    from stream.regions.policy import subscription_pattern

    pattern = subscription_pattern(Settings(namespace="shop.v1").requests_topic,
                                   ["east", "south"])
    assert pattern.startswith("^")
    rx = re.compile(pattern)
    assert rx.match("shop.v1.requests")
    assert rx.match("east.shop.v1.requests")
    assert rx.match("south.shop.v1.requests")
    for other in ("west.shop.v1.requests", "shopXv1.requests", "east.shop.v1.predictions",
                  "east.west.shop.v1.requests", "shop.v1.requests.x"):
        assert not rx.match(other), other


def as_client(fake: FakeRedis) -> RedisClient:
    """The fake where the stores take a redis-py client (it has the commands they call)."""
    return cast(RedisClient, fake)


class FakeRedis:
    """Just what FirstSeen and AnsweredStore use."""

    def __init__(self, fail: bool = False) -> None:
        self.data: dict[str, bytes] = {}
        self.fail = fail

    def set(self, key: str, value: bytes, nx: bool = False, ex: int | None = None) -> bool:
        if self.fail:
            raise redis.ConnectionError("down")
        if nx and key in self.data:
            return False
        self.data[key] = value
        return True

    def pipeline(self, transaction: bool = False) -> Any:
        outer = self

        class Pipe:
            def __init__(self) -> None:
                self.ops: list[tuple[str, bytes | None]] = []  # value None: EXISTS

            def set(self, key: str, value: bytes, ex: int | None = None) -> None:
                self.ops.append((key, value))

            def exists(self, key: str) -> None:
                self.ops.append((key, None))

            def execute(self) -> list[bool | int]:
                if outer.fail:
                    raise redis.ConnectionError("down")
                out: list[bool | int] = []
                for key, value in self.ops:
                    if value is None:
                        out.append(int(key in outer.data))
                    else:
                        outer.data[key] = value
                        out.append(True)
                return out

        return Pipe()


def record(rid: str | None, topic: str = "ns.predictions", digest: str | None = None
           ) -> ReadRecord:
    value = {"request_id": rid} if rid else {"error": "undecodable"}
    headers = (("request_digest", digest.encode()),) if digest else ()
    return ReadRecord(topic, 0, 0, None, value, None, None, 0, 0, headers)


def test_the_reader_takes_a_reused_id_with_other_content_for_another_request() -> None:
    counts = UniqueCounts()
    records = [record("a", digest="d1"), record("a", "east.ns.predictions", digest="d1"),
               record("a", digest="forged")]
    out = list(unique(records, FirstSeen(as_client(FakeRedis()), "ns", "g", 60), counts))
    assert [digest_of(r) for r in out] == ["d1", "forged"]  # the mirrored copy dropped
    assert counts.dropped == 1


def test_the_reader_passes_each_request_id_once_and_never_holds_back_on_redis_trouble() -> None:
    store = FakeRedis()
    counts = UniqueCounts()
    records = [record("a"), record("b"), record("a", "east.ns.predictions"), record(None),
               record(None), record("b")]
    out = list(unique(records, FirstSeen(as_client(store), "ns", "g", 60), counts))
    assert [r.value for r in out] == [{"request_id": "a"}, {"request_id": "b"},
                                      {"error": "undecodable"}, {"error": "undecodable"}]
    assert (counts.read, counts.passed, counts.dropped, counts.unchecked) == (6, 4, 2, 0)
    # Another group sees everything once again; Redis down: records pass, counted unchecked.
    down = UniqueCounts()
    assert len(list(unique([record("a"), record("a")], FirstSeen(as_client(FakeRedis(fail=True)), "ns",
                                                                   "g", 60), down))) == 2
    assert down.unchecked == 2
    assert down.dropped == 0


def test_answered_ids_are_recorded_in_every_region_and_a_dead_one_is_skipped() -> None:
    here, there, dead = FakeRedis(), FakeRedis(), FakeRedis(fail=True)
    breaker = CircuitBreaker("dead", BreakerConfig(failure_threshold=1, open_seconds=60))
    store = AnsweredStore(as_client(here), "ns", 60, CircuitBreaker("redis"))
    store.replicas = [("west", there, CircuitBreaker("west")), ("south", dead, breaker)]
    store.record([("r1", "d1"), ("r2", None)])
    assert set(here.data) == set(there.data) == {"ns:answered:{r1}", "ns:answered:{r1}:d1",
                                                 "ns:answered:{r2}"}
    assert not breaker.allow()  # the dead region's breaker opened: no more waiting on it
    store.record([("r3", "d3")])
    assert "ns:answered:{r3}:d3" in there.data


def test_an_answered_id_suppresses_only_the_same_content() -> None:
    """Same id and digest: a duplicate. Same id, other digest: a conflict (someone reusing
    the id must not silence the request). An unknown digest (None) matches any content."""
    store = AnsweredStore(as_client(FakeRedis()), "ns", 60, CircuitBreaker("redis"))
    store.record([("r1", "d1"), ("r2", None)])
    seen = store.answered([("r1", "d1"), ("r1", "forged"), ("r2", "d2"), ("r3", "d3"),
                           ("r1", None)])
    assert seen.duplicates == {"r1"}  # ("r1", "d1") and ("r1", None)
    assert seen.conflicts == {"r1", "r2"}  # ("r1", "forged"); r2 was seeded by id alone
    assert store.answered([("r3", "d3")]).duplicates == set()
    down = AnsweredStore(as_client(FakeRedis(fail=True)), "ns", 60, CircuitBreaker("redis"))
    assert down.answered([("r1", "d1")]).duplicates == set()  # fails open


def test_ids_a_dead_region_missed_are_written_when_it_returns_or_the_worker_moves_there() -> None:
    here, there = FakeRedis(), FakeRedis(fail=True)
    breaker = CircuitBreaker("west", BreakerConfig(failure_threshold=1, open_seconds=0.0))
    store = AnsweredStore(as_client(here), "ns", 60, CircuitBreaker("redis"))
    store.replicas = [("west", there, breaker)]
    store.record([("r1", None)])
    store.record([("r2", None)])
    assert list(store.pending["west"]) == [("r1", None), ("r2", None)]
    assert not there.data
    there.fail = False  # west's Redis is back: the next record writes the backlog first
    store.record([("r3", None)])
    assert set(there.data) == {"ns:answered:{r1}", "ns:answered:{r2}", "ns:answered:{r3}"}
    assert list(store.pending["west"]) == []
    # A worker moving to west takes the backlog along and writes it there.
    store.pending["west"] = deque([("r4", "d4")])
    moved = AnsweredStore(as_client(there), "ns", 60, CircuitBreaker("redis"))
    assert moved.adopt_pending(store.pending, "west") == 1
    assert "ns:answered:{r4}:d4" in there.data
    assert "west" not in moved.pending


def test_a_dead_regions_backlog_is_a_bounded_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    from processors import dedupe

    monkeypatch.setattr(dedupe, "PENDING_MAX", 5)
    store = AnsweredStore(as_client(FakeRedis()), "ns", 60, CircuitBreaker("redis"))
    store.replicas = [("west", FakeRedis(fail=True), CircuitBreaker(
        "west", BreakerConfig(failure_threshold=1, open_seconds=60)))]
    for i in range(0, 40, 4):
        store.record([(f"r{j}", None) for j in range(i, i + 4)])
    assert [rid for rid, _d in store.pending["west"]] == ["r35", "r36", "r37", "r38",
                                                          "r39"]  # the newest
    assert store.pending_size() == 5
    assert store.pending_dropped == 35


class FakeAnswered:
    """request id -> the digest Redis holds for it."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known

    def answered(self, answers: list[tuple[str, str | None]]) -> Any:
        from processors.dedupe import Seen

        seen = Seen()
        for rid, digest in answers:
            if rid in self.known:
                (seen.duplicates if self.known[rid] == digest else seen.conflicts).add(rid)
        return seen


def test_a_request_is_answered_once_across_redis_the_batch_in_flight_and_the_batch_itself() -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from processors.records import BatchResult, Outbound
    from stream.observability.metrics import WorkerMetrics
    from stream.worker.accounting import Accounting
    from stream.worker.delivery import sent_answers
    from stream.worker.stats import WorkerStats

    def out(rid: str | None, outcome: str = "model", digest: str = "same") -> Outbound:
        return Outbound("ns.predictions", None, b"", [], outcome, rid,  # type: ignore[arg-type]
                        digest=digest)

    control = SimpleNamespace(serving=SimpleNamespace(
        answered=FakeAnswered({"r1": "same", "r5": "someone else's"})))
    metrics = WorkerMetrics.create(CollectorRegistry(), process_metrics=False)
    accounting = Accounting(metrics, WorkerStats(), control,  # type: ignore[arg-type]
                            "ns.requests", lambda: None)
    flying = BatchResult([out("r2"), out("r9"), out("r6", digest="first")], 3, 0, 0,
                         skipped=frozenset({1}))
    batch = BatchResult([out("r1"), out("r2"), out("r3"), out("r3"), out("r9"),
                         out(None, "dead_letter"), out("r4", "dead_letter"), out("r5"),
                         out("r6", digest="second"), out("r7"), out("r7", digest="other"),
                         out("r7", digest="other")], 10, 0, 2)
    result = accounting.suppress_answered(batch, lambda: sent_answers([flying]))
    # r1: Redis knows it with this content; r2: sent by the batch in flight; the second r3:
    # earlier in this batch. r9 was skipped in flight (not sent there), so it is answered
    # here. Dead letters always go out. r5, r6 and the second r7 reuse an answered id with
    # other content: conflicts, answered and counted, never suppressed; the third r7 repeats
    # the second's content: a duplicate of it.
    assert result.skipped == frozenset({0, 1, 3, 11})
    assert [o.request_id for o in result.sent()] == ["r3", "r9", None, "r4", "r5", "r6",
                                                    "r7", "r7"]
    assert (result.model, result.fallback) == (6, 0)
    assert metrics.request_id_conflicts._value.get() == 3


def test_exactly_once_with_regions_is_refused_with_the_way_out() -> None:
    from stream.regions.policy import FollowRegions

    settings = Settings(regions="east=e:1;west=w:1",
                        guarantee="exactly-once")
    with pytest.raises(ConfigurationError, match="at-least-once"):
        FollowRegions(settings)


def test_poison_entries_of_revoked_partitions_are_forgotten() -> None:
    from stream.worker.positions import without_partitions

    poison = {("t", 0, 5): "refused", ("t", 1, 9): "refused", ("u", 0, 2): "refused"}
    assert without_partitions(poison, {("t", 0), ("u", 0)}) == {("t", 1, 9): "refused"}
