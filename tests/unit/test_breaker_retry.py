"""Circuit breaker transitions and bounded retries."""

from __future__ import annotations

import pytest

from fallback.breaker import BreakerConfig, BreakerState, CircuitBreaker
from fallback.retry import RetryPolicy
from processors.exceptions import InferenceError, RequestValidationError


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read anew (an attribute read would stay narrowed for mypy
    across the method calls that change it)."""
    return breaker.state


def make(clock: list[float], **cfg: float) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker("m", BreakerConfig(**cfg),  # type: ignore[arg-type]
                             on_change=lambda _n, a, b: changes.append((a.name, b.name)),
                             clock=lambda: clock[0])
    return breaker, changes


def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    clock = [0.0]
    breaker, changes = make(clock, failure_threshold=3, open_seconds=5)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    assert changes == [("CLOSED", "OPEN")]


def test_opens_on_error_rate_over_the_window() -> None:
    clock = [0.0]
    breaker, _ = make(clock, failure_threshold=100, failure_rate=0.5, window=10, min_calls=10)
    for i in range(1, 10):  # alternate: 4 failures in 9 calls, below min_calls
        breaker.record_success() if i % 2 else breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure()  # 5 of 10 failed: the rate reaches 0.5
    assert state_of(breaker) is BreakerState.OPEN


def test_half_open_probe_closes_on_success_and_reopens_on_failure() -> None:
    clock = [0.0]
    breaker, changes = make(clock, failure_threshold=1, open_seconds=5, half_open_calls=1)
    breaker.record_failure()
    clock[0] = 5.0
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    clock[0] = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert changes == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "OPEN"),
                       ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


def test_retry_retries_transient_errors_with_backoff() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    policy = RetryPolicy(attempts=3, base_s=0.1, max_s=1.0, budget_s=10)
    assert policy.call(flaky, sleep=sleeps.append) == "ok"
    assert len(calls) == 3
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 0.9


def test_poison_errors_are_not_retried() -> None:
    calls: list[int] = []

    def poison() -> None:
        calls.append(1)
        raise RequestValidationError("bad")

    with pytest.raises(RequestValidationError):
        RetryPolicy(attempts=5).call(poison, sleep=lambda _s: None)
    assert len(calls) == 1


def test_retry_never_exceeds_its_time_budget() -> None:
    now = [0.0]

    def fails() -> None:
        now[0] += 0.3
        raise InferenceError("transient")  # InferenceError is retriable

    with pytest.raises(InferenceError):
        RetryPolicy(attempts=100, base_s=0.2, max_s=0.2, budget_s=1.0).call(
            fails, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert now[0] <= 1.3
