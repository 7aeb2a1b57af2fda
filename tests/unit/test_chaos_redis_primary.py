"""A chaos write to the Redis primary survives a failover another strike started: it asks
for the primary again instead of failing the strike on a node Sentinel just demoted."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis

from stream.chaos import faults_redis

CTX = cast(Any, SimpleNamespace(settings=None))  # a strike's context: only its settings are read


class Store:
    """One client as ``store_for`` would build it: the first ``bad`` stores built reach a
    demoted node."""

    def __init__(self, fails: bool) -> None:
        self.fails, self.closed = fails, False
        self.client = SimpleNamespace(close=self.close)

    def close(self) -> None:
        self.closed = True


def stores(monkeypatch: pytest.MonkeyPatch, bad: int) -> list[Store]:
    built: list[Store] = []

    def build(_settings: Any) -> Store:
        built.append(Store(fails=len(built) < bad))
        return built[-1]

    monkeypatch.setattr("stream.chaos.faults_redis.store_for", build)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    return built


def write(store: Store) -> None:
    if store.fails:
        raise redis.exceptions.ConnectionError("The previous master is now a slave")


def test_a_write_that_reached_a_demoted_primary_is_made_again_on_the_new_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built = stores(monkeypatch, bad=2)
    faults_redis.on_primary(CTX, cast(Any, write), "remove the garbage")
    assert [s.fails for s in built] == [True, True, False]


def test_a_failover_that_never_settles_fails_the_strike_naming_what_and_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stores(monkeypatch, bad=10**6)
    with pytest.raises(RuntimeError, match="could not remove the garbage within 0s: "
                       "The previous master is now a slave"):
        faults_redis.on_primary(CTX, cast(Any, write),
                                "remove the garbage", deadline_s=0)


def test_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    built = stores(monkeypatch, bad=0)

    def wrong(_store: Store) -> None:
        raise redis.exceptions.ResponseError("WRONGTYPE")

    with pytest.raises(redis.exceptions.ResponseError):
        faults_redis.on_primary(CTX, cast(Any, wrong), "write the garbage")
    assert len(built) == 1
