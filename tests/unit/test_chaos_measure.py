"""Recovery time, p99 and the worst of several strikes, from send and answer times."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from stream.chaos.measure import Timeline, percentile, recovery, seconds, worst

Points = Mapping[str, tuple[int, float | None]]


def flow(start_ms: int, end_ms: int, latency: float, every_ms: int = 10) -> Points:
    return {f"r{t}": (t, latency) for t in range(start_ms, end_ms, every_ms)}


def timeline(*parts: Points) -> Timeline:
    created: dict[str, int] = {}
    answered: dict[str, int] = {}
    for part in parts:
        for rid, (c, lat) in part.items():
            created[rid] = c
            if lat is not None:
                answered[rid] = c + int(lat)
    return Timeline.build(created, answered)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.99) is None
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([float(i) for i in range(1, 101)], 0.5) == 50.0


def test_an_outage_recovers_when_a_settle_period_meets_the_bound() -> None:
    # 100 ms before the fault at 10 s; requests sent 10-14 s wait until 16 s; then 100 ms.
    stalled = {f"s{t}": (t, float(16_000 - t)) for t in range(10_000, 14_000, 10)}
    tl = timeline(flow(0, 10_000, 100), stalled, flow(14_000, 30_000, 100))
    fig = recovery(tl, fault_ms=10_000, end_ms=30_000)
    assert fig.p99_before_ms == 100
    assert fig.bound_ms == 500  # the floor: 2 x 100 ms is below it
    assert fig.recovery_s == pytest.approx(4.0, abs=0.6)  # the first request sent at or after 13.5 s met it
    assert fig.p99_during_ms is not None
    assert fig.p99_during_ms > 2000


def test_a_fault_with_no_effect_recovers_in_zero_and_a_later_blip_does_not_undo_it() -> None:
    blip = {"late": (25_000, 5000.0)}
    fig = recovery(timeline(flow(0, 30_000, 100), blip), fault_ms=10_000, end_ms=30_000)
    assert fig.recovery_s == 0.0


def test_never_recovering_has_no_recovery_time() -> None:
    lost = {f"x{t}": (t, None) for t in range(10_000, 30_000, 10)}
    fig = recovery(timeline(flow(0, 10_000, 100), lost), fault_ms=10_000, end_ms=30_000)
    assert fig.recovery_s is None


def test_requests_in_flight_at_the_fault_do_not_raise_the_baseline() -> None:
    # Sent just before the fault, answered long after it: the fault's, not the baseline's.
    in_flight = {f"f{t}": (t, 9000.0) for t in range(9_500, 10_000, 10)}
    tl = timeline(flow(0, 9_500, 200), in_flight, flow(10_000, 20_000, 200))
    fig = recovery(tl, fault_ms=10_000, end_ms=20_000)
    assert fig.p99_before_ms == 200
    assert fig.bound_ms == 500


def test_worst_of_several_strikes_prefers_no_recovery() -> None:
    tl = timeline(flow(0, 30_000, 100))
    ok = recovery(tl, 10_000, 30_000)
    lost = recovery(timeline(flow(0, 10_000, 100), {"x": (12_000, None)}), 10_000, 30_000)
    assert worst([ok, lost]) is lost
    assert worst([ok]) is ok


def test_a_later_outage_is_not_hidden_by_a_good_start() -> None:
    # Fine for 5 s after the fault, then nothing answered: not recovered (a first-good-
    # window rule called this 0 s once, with 5,800 requests unanswered).
    later_lost = {f"x{t}": (t, None) for t in range(15_000, 30_000, 10)}
    tl = timeline(flow(0, 15_000, 100), later_lost)
    assert recovery(tl, fault_ms=10_000, end_ms=30_000).recovery_s is None


def test_a_lone_slow_request_is_a_blip_not_an_outage() -> None:
    blip = {"slow": (20_000, 9000.0)}  # one of about 100 sent in that second
    fig = recovery(timeline(flow(0, 30_000, 100), blip), fault_ms=10_000, end_ms=30_000)
    assert fig.recovery_s == 0.0


def test_requests_caught_by_the_next_strike_belong_to_it() -> None:
    # Strike 1 at 10 s recovers at 15 s; strike 2 at 40 s delays what was in flight.
    first = {f"a{t}": (t, float(15_000 - t)) for t in range(10_000, 14_000, 10)}
    second = {f"b{t}": (t, 8000.0) for t in range(39_800, 40_000, 10)}
    tl = timeline(flow(0, 10_000, 100), first, flow(14_000, 39_800, 100), second)
    fig = recovery(tl, fault_ms=10_000, end_ms=40_000, next_strike=True)
    assert fig.recovery_s == pytest.approx(4.0, abs=1.0)


def test_seconds_profile_shows_the_outage_second_by_second() -> None:
    stalled = {f"s{t}": (t, 3000.0) for t in range(10_000, 12_000, 10)}
    lost = {"gone": (12_500, None)}
    tl = timeline(flow(8_000, 10_000, 100), stalled, lost, flow(13_000, 15_000, 100))
    profile = seconds(tl, fault_ms=10_000, end_ms=15_000, bound_ms=500, before_s=2)
    assert [p["s"] for p in profile] == [-2, -1, 0, 1, 2, 3, 4]
    by = {p["s"]: p for p in profile}
    assert by[-1] == {"s": -1, "sent": 100, "answered": 100, "missed": 0, "p50_ms": 100.0,
                      "max_ms": 100.0}
    assert by[0]["missed"] == 100
    assert by[0]["p50_ms"] == 3000.0
    assert by[2] == {"s": 2, "sent": 1, "answered": 0, "missed": 1, "p50_ms": None,
                     "max_ms": None}
    assert by[4]["missed"] == 0
