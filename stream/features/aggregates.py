"""An entity's streaming aggregates as one value, with the source offsets it includes.

The feature app keeps one table entry per entity::

    {"w": {"<size_s>|<window start ms>": [count, sum]},   # tumbling windows
     "last": <latest event time ms>,
     "seen": {"<events partition>": <highest offset applied>}}

Counts, sums and the offsets they include travel in one changelog record, so they
cannot disagree: an event the restored state already includes (its offset is at or
below ``seen`` for its partition) is skipped. That makes applying an event idempotent,
whatever a crash, restart or transaction hiccup replays — the guarantee no longer
rests on faust's exactly-once commit alone (see ``stream/features/watchdog.py`` for
the restart that needs it). Offsets are per events partition: an entity's events are
keyed by entity, so they arrive in one partition; should they not, each partition's
offsets are still tracked apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

WINDOWS = {"5m": 300, "1h": 3600}
KEEP_WINDOWS = 3  # window lengths kept before an entity's latest event

State = dict[str, Any]


def slot(ts_ms: int, size_s: int) -> str:
    """The tumbling window of ``size_s`` holding ``ts_ms``, as ``size|start``."""
    return f"{size_s}|{ts_ms // (size_s * 1000) * size_s * 1000}"


def window_key(entity: str, ts_ms: int, size_s: int) -> str:
    """An entity's window as ``entity|size|start``."""
    return f"{entity}|{slot(ts_ms, size_s)}"


def expired_windows(keys: Iterable[str], latest_ms: int) -> list[str]:
    """Window keys (``[entity|]size|start``) that closed over KEEP_WINDOWS lengths before
    ``latest_ms``, at any distance (gaps in event time skip windows)."""
    out = []
    for key in keys:
        size, start = key.rsplit("|", 2)[-2:]
        if int(start) + int(size) * 1000 * (1 + KEEP_WINDOWS) <= latest_ms:
            out.append(key)
    return out


def empty() -> State:
    """The state of an entity with no event yet."""
    return {"w": {}, "last": 0, "seen": {}}


def includes(state: State, partition: int, offset: int) -> bool:
    """True when ``state`` already counts the event at ``partition``/``offset``."""
    return int(state["seen"].get(str(partition), -1)) >= offset


def apply(state: State | None, partition: int, offset: int, ts_ms: int,
          amount: float) -> State:
    """``state`` with the event counted (a new dict; callers skip ``includes`` first)."""
    base = empty() if state is None else state
    windows = {k: list(v) for k, v in base["w"].items()}
    for size in WINDOWS.values():
        key = slot(ts_ms, size)  # the entity is the table key
        count, total = windows.get(key, [0, 0.0])
        windows[key] = [count + 1, total + amount]
    latest = max(int(base["last"]), ts_ms)
    for key in expired_windows(windows, latest):  # bounded, whatever the gaps
        del windows[key]
    seen = dict(base["seen"])
    seen[str(partition)] = max(offset, int(seen.get(str(partition), -1)))
    return {"w": windows, "last": latest, "seen": seen}


def features(state: State) -> dict[str, float]:
    """The values written to Redis: the windows holding the latest event, and its time."""
    latest = int(state["last"])
    out: dict[str, float] = {"last_event_at": float(latest)}
    for name, size in WINDOWS.items():
        count, total = state["w"].get(slot(latest, size), [0, 0.0])
        out[f"tx_count_{name}"] = float(count)
        out[f"tx_sum_{name}"] = float(total)
    return out


def expected_features(events: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The same aggregates computed plainly (tests compare the app against this)."""
    latest: dict[str, int] = {}
    for ev in events:
        latest[ev["entity_id"]] = max(latest.get(ev["entity_id"], 0), ev["timestamp"])
    out: dict[str, dict[str, float]] = {e: {"last_event_at": float(t)} for e, t in latest.items()}
    for w, size in WINDOWS.items():
        for entity, t in latest.items():
            bucket = t // (size * 1000)
            mine = [ev for ev in events if ev["entity_id"] == entity
                    and ev["timestamp"] // (size * 1000) == bucket]
            out[entity][f"tx_count_{w}"] = float(len(mine))
            out[entity][f"tx_sum_{w}"] = float(sum(ev["amount"] for ev in mine))
    return out
