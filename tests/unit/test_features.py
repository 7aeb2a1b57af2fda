"""Feature views, the in-process cache and enrichment (with an in-memory store fake)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fallback.breaker import BreakerConfig, CircuitBreaker
from processors.features.cache import FeatureCache
from processors.features.enrich import FeatureEnricher
from processors.features.store import UPDATED_AT, parse_value
from processors.features.views import FeatureConfigError, FeatureRepo
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from stream.features.aggregates import expected_features, window_key
from tests.fakes import FakeStore

REPO = {"entity": "card", "request_features": ["amount"],
        "views": [{"name": "act", "ttl_s": 60, "max_staleness_s": 30,
                   "features": {"cnt": {"type": "int", "default": 0},
                                "avg": {"type": "double", "default": 5.0}}}]}


def write_repo(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "features.json"
    path.write_text(json.dumps(raw))
    return path


def enricher(tmp_path: Path, clock: list[float], precedence: str = "request"
             ) -> tuple[FeatureEnricher, FakeStore]:
    repo = FeatureRepo.load(write_repo(tmp_path, REPO))
    store = FakeStore()
    cache = FeatureCache(100, ttl_s=1.0, clock=lambda: clock[0])
    breaker = CircuitBreaker("redis", BreakerConfig(failure_threshold=2, open_seconds=5))
    return FeatureEnricher(repo, store, cache, breaker, precedence), store  # type: ignore[arg-type]


def now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def test_reference_model_inputs_are_covered_by_its_views() -> None:
    repo = FeatureRepo.for_model(DEFAULT_MODEL_DIR)
    assert repo is not None
    repo.check_covers(OnnxModel.load(DEFAULT_MODEL_DIR).meta.features)
    with pytest.raises(FeatureConfigError, match=r"needs features no view .* \['brand_new'\]"):
        repo.check_covers(("amount", "brand_new"))


@pytest.mark.parametrize(("change", "message"), [
    ({"entity": "not a name"}, "'entity' must be a name"),
    ({"views": [{"name": "v", "features": {}}]}, r"views\[0\].features must be a non-empty"),
    ({"views": [{"name": "v", "features": {"a": {"type": "text"}}}]}, "type must be double"),
    ({"views": [{"name": "v", "features": {"a": {}}}, {"name": "w", "features": {"a": {}}}]},
     "feature 'a' is also in view 'v'"),
    ({"views": [{"name": "v", "ttl_s": 0, "features": {"a": {}}}]}, "ttl_s must be > 0"),
])
def test_bad_view_definitions_name_the_file_and_field(
        tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(FeatureConfigError, match=message) as info:
        FeatureRepo.load(write_repo(tmp_path, {**REPO, **change}))
    assert str(tmp_path) in str(info.value)


def test_cache_is_lru_with_a_freshness_ttl() -> None:
    clock = [0.0]
    cache = FeatureCache(2, ttl_s=1.0, clock=lambda: clock[0])
    cache.put("v", "a", {"x": 1.0}, 1)
    cache.put("v", "b", {"x": 2.0}, 1)
    assert cache.fresh("v", "a") is not None  # a is now most recently used
    cache.put("v", "c", {"x": 3.0}, 1)  # evicts b
    assert cache.any("v", "b") is None
    assert cache.any("v", "a") is not None
    clock[0] = 2.0
    assert cache.fresh("v", "a") is None
    assert cache.any("v", "a") is not None


def test_store_values_fill_requests_and_request_values_win(tmp_path: Path) -> None:
    clock = [0.0]
    enr, store = enricher(tmp_path, clock)
    store.rows[("act", "e1")] = ({"cnt": 7.0, "avg": 9.0}, now_ms())
    reqs = [{"entity_id": "e1", "features": {"amount": 1.0, "avg": 100.0}},
            {"entity_id": "e2", "features": {"amount": 2.0}}]
    flags, stats = enr.enrich(reqs)
    assert reqs[0]["features"] == {"cnt": 7.0, "avg": 100.0, "amount": 1.0}
    assert reqs[1]["features"] == {"cnt": 0.0, "avg": 5.0, "amount": 2.0}  # defaults
    assert flags == [[], []]
    assert stats.misses == 2
    assert stats.unknown_entities == 1
    assert store.reads == 1  # one round trip for the whole batch
    enr_store, store2 = enricher(tmp_path, clock, precedence="store")
    store2.rows[("act", "e1")] = ({"cnt": 7.0, "avg": 9.0}, now_ms())
    req: dict[str, Any] = {"entity_id": "e1", "features": {"amount": 1.0, "avg": 100.0}}
    enr_store.enrich([req])
    assert req["features"]["avg"] == 9.0


def test_cache_hits_skip_redis_and_failures_degrade_to_stale_then_defaults(
        tmp_path: Path) -> None:
    clock = [0.0]
    enr, store = enricher(tmp_path, clock)
    store.rows[("act", "e1")] = ({"cnt": 7.0, "avg": 9.0}, now_ms())
    enr.enrich([{"entity_id": "e1", "features": {}}])
    reads = store.reads
    _flags, stats = enr.enrich([{"entity_id": "e1", "features": {}}])
    assert stats.hits == 1
    assert store.reads == reads
    clock[0] = 2.0  # cache row stale for serving, still within max staleness (30 s)
    store.fail = True
    req: dict[str, Any] = {"entity_id": "e1", "features": {}}
    flags, stats = enr.enrich([req])
    assert flags == [["act"]]
    assert req["features"]["cnt"] == 7.0
    req2 = {"entity_id": "e9", "features": {}}
    flags, stats = enr.enrich([req2])
    assert flags == [["act"]]
    assert req2["features"] == {"cnt": 0.0, "avg": 5.0}
    assert stats.degraded == {"act": 1}


def test_rows_older_than_max_staleness_are_not_used(tmp_path: Path) -> None:
    clock = [0.0]
    enr, store = enricher(tmp_path, clock)
    store.rows[("act", "e1")] = ({"cnt": 7.0}, now_ms() - 60_000)  # updated a minute ago
    enr.enrich([{"entity_id": "e1", "features": {}}])
    clock[0] = 2.0
    store.fail = True
    req: dict[str, Any] = {"entity_id": "e1", "features": {}}
    enr.enrich([req])
    assert req["features"]["cnt"] == 0.0  # 60 s old > 30 s max staleness: defaults


def test_window_semantics_of_the_streaming_app() -> None:
    events = [{"entity_id": "a", "amount": 1.0, "timestamp": 300_000 * 10 + 5},
              {"entity_id": "a", "amount": 2.0, "timestamp": 300_000 * 10 + 299_000},
              {"entity_id": "a", "amount": 4.0, "timestamp": 300_000 * 9 + 1}]  # earlier window
    got = expected_features(events)["a"]
    assert got["tx_count_5m"] == 2.0
    assert got["tx_sum_5m"] == 3.0
    assert got["last_event_at"] == 300_000 * 10 + 299_000
    assert window_key("a", 300_000 * 10 + 5, 300) == window_key("a", 300_000 * 10 + 299_000, 300)
    assert window_key("a", 300_000 * 9 + 1, 300) != window_key("a", 300_000 * 10, 300)


@pytest.mark.parametrize(("raw", "ftype", "why"), [
    ("not-a-number", "double", "not a number"), ("1e999", "int", "not finite"),
    ("nan", "double", "not finite"), ("-inf", "double", "not finite"),
    ("2.5", "int", "not an integer"), (b"\xff\xfe", "double", "not a number"),
])
def test_parse_value_refuses_what_the_type_forbids(raw: str | bytes, ftype: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_value(raw, ftype)
    assert parse_value(b"3", "int") == 3.0
    assert parse_value("0.25") == 0.25


def test_a_corrupt_stored_value_degrades_that_feature_instead_of_failing(
        tmp_path: Path) -> None:
    clock = [0.0]
    enr, store = enricher(tmp_path, clock)
    store.rows[("act", "e1")] = ({"cnt": 7.0, "avg": 9.0}, now_ms())
    enr.enrich([{"entity_id": "e1", "features": {}}])  # a good row, now cached
    clock[0] = 2.0  # past the cache's freshness: the next batch reads Redis again
    store.rows.pop(("act", "e1"))
    store.raw[("act", "e1")] = {"cnt": "not-a-number", "avg": "11.0", UPDATED_AT: "1"}
    store.raw[("act", "e2")] = {"cnt": "1e999", "avg": "nan"}
    reqs = [{"entity_id": "e1", "features": {}}, {"entity_id": "e2", "features": {}}]
    flags, stats = enr.enrich(reqs)
    assert flags == [["act"], ["act"]]
    assert reqs[0]["features"] == {"cnt": 7.0, "avg": 11.0}  # cached within staleness
    assert reqs[1]["features"] == {"cnt": 0.0, "avg": 5.0}  # no cached row: defaults
    assert stats.corrupt == {"act": 3}
    assert stats.degraded == {"act": 2}
    assert ("act", "e2", "cnt", "not finite: '1e999'") in stats.corrupt_fields
    flags, _ = enr.enrich([{"entity_id": "e2", "features": {}}])
    assert flags == [["act"]]  # corrupt rows are not cached: flagged while stored


def test_old_windows_expire_across_gaps_in_event_time() -> None:
    from stream.features.aggregates import expired_windows

    hour = 3_600_000
    keys = [window_key("c", t, 3600) for t in (0, 5 * hour, 9 * hour)] \
        + [window_key("c", 9 * hour - 300_000, 300)]
    # Latest event at 9 h: the 1 h windows of 0 h and 5 h are gone (a 4 h gap skipped the
    # windows a fixed "three back" key would have named), the recent ones stay.
    assert expired_windows(keys, 9 * hour) == [keys[0], keys[1]]


def test_idle_entities_are_swept_per_partition_by_event_time() -> None:
    from stream.features.faust_app import IdleSweep

    sweep = IdleSweep(ttl_ms=10_000, per_call=10)
    latest = {"a": 0, "b": 100, "c": 12_000}
    sweep.note(0, "a", 0)
    sweep.note(0, "b", 100)
    sweep.note(1, "z", 0)
    assert sweep.expired(0, latest.get) == []  # nothing is 10 s behind yet
    latest["b"] = 2500
    sweep.note(0, "b", 2500)  # b is active again: its old entry is stale
    sweep.note(0, "c", 12_000)
    assert sweep.expired(0, latest.get) == ["a"]  # b's newer event keeps it
    assert sweep.expired(1, latest.get) == []  # another partition's clock
    assert len(sweep) == 3


def test_an_event_is_counted_once_however_often_it_is_replayed() -> None:
    from stream.features import aggregates

    events = [(0, 10, 300_000 * 10 + 5, 1.0), (0, 11, 300_000 * 10 + 7, 2.0),
              (0, 12, 300_000 * 9 + 1, 4.0)]
    state = None
    for partition, offset, ts, amount in events + events[:2] + events:  # replays
        if state is not None and aggregates.includes(state, partition, offset):
            continue
        state = aggregates.apply(state, partition, offset, ts, amount)
    assert state is not None
    got = aggregates.features(state)
    want = aggregates.expected_features(
        [{"entity_id": "a", "amount": a, "timestamp": t} for _, _, t, a in events])["a"]
    assert got == want
    assert state["seen"] == {"0": 12}
    # Another partition's offsets are tracked apart: offset 5 there is new.
    assert not aggregates.includes(state, 1, 5)
    assert aggregates.includes(state, 0, 11)


def test_an_entity_entry_keeps_only_recent_windows() -> None:
    from stream.features import aggregates

    hour = 3_600_000
    state = None
    for i, ts in enumerate([0, 5 * hour, 9 * hour]):
        state = aggregates.apply(state, 0, i, ts, 1.0)
    assert state is not None
    assert sorted(state["w"]) == ["300|32400000", "3600|32400000"]  # the 0 h and 5 h ones went
