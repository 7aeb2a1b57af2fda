"""Join served inputs with labels into a training set, counting what does not join.

A snapshot (``InputSnapshot``: the features a request was answered with) and a label
(``Label``) meet on ``request_id``. Within the data window ``[start_ms, end_ms)`` of
serving times:

- a label whose request has no snapshot in the window counts as ``unknown_request``;
- a second label for the same request counts as ``duplicate`` (same value) or
  ``conflicting`` (another value); the first one is kept;
- a label that arrived more than ``label_wait_ms`` after its request was served counts as
  ``late`` and is left out (the outcome was not known in time);
- a label that is not 0 or 1 counts as ``invalid``;
- a snapshot without a label counts as ``unlabelled``; one that repeats a request (an
  at-least-once redelivery) as ``duplicate_snapshot``; one lacking a model feature as
  ``incomplete``.

Nothing here raises on bad records: a training window full of surprises is reported, not
crashed on. Rows come out sorted by serving time (then request id), so the same records
give the same arrays whatever order Kafka returned them in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class JoinCounts:
    """What the join saw, by kind."""

    snapshots: int = 0
    labels: int = 0
    joined: int = 0
    outside_window: int = 0
    duplicate_snapshot: int = 0
    incomplete: int = 0
    unlabelled: int = 0
    unknown_request: int = 0
    duplicate: int = 0
    conflicting: int = 0
    late: int = 0
    invalid: int = 0

    @property
    def coverage(self) -> float:
        """Share of the window's answered requests that have a usable label."""
        served = self.joined + self.unlabelled + self.late
        return self.joined / served if served else 0.0


@dataclass
class Dataset:
    """Joined rows, oldest first."""

    features: tuple[str, ...]
    x: np.ndarray  # float32 [n, len(features)]
    y: np.ndarray  # int8 [n]
    served_at: np.ndarray  # int64 epoch ms [n]
    request_ids: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)  # what answered each request

    def __len__(self) -> int:
        return len(self.y)

    def digest(self) -> str:
        """sha256 of the rows' content (what makes a run reproducible)."""
        h = hashlib.sha256()
        h.update("\0".join(self.features).encode())
        for part in (self.x, self.y, self.served_at):
            h.update(np.ascontiguousarray(part).tobytes())
        h.update("\0".join(self.request_ids).encode())
        return h.hexdigest()

    def split(self, holdout: float) -> tuple[Dataset, Dataset]:
        """(older part for training, most recent ``holdout`` share for judging)."""
        cut = len(self) - max(1, round(len(self) * holdout))
        return self._rows(slice(0, cut)), self._rows(slice(cut, len(self)))

    def _rows(self, rows: slice) -> Dataset:
        return Dataset(self.features, self.x[rows], self.y[rows], self.served_at[rows],
                       self.request_ids[rows], self.versions[rows])


def join(snapshots: Iterable[dict[str, Any]], labels: Iterable[dict[str, Any]],
         features: Sequence[str], start_ms: int, end_ms: int,
         label_wait_ms: int) -> tuple[Dataset, JoinCounts]:
    """The training set of the window, and the counts of everything that did not join."""
    counts = JoinCounts()
    served: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        counts.snapshots += 1
        at = snap.get("served_at", 0)
        if not start_ms <= at < end_ms:
            counts.outside_window += 1
            continue
        rid = snap.get("request_id", "")
        if rid in served:
            counts.duplicate_snapshot += 1
            continue
        values = snap.get("features") or {}
        if any(f not in values for f in features):
            counts.incomplete += 1
            continue
        served[rid] = snap
    label_of: dict[str, int] = {}
    for label in labels:
        counts.labels += 1
        value, rid = label.get("label"), label.get("request_id", "")
        if value not in (0, 1):
            counts.invalid += 1
            continue
        seen = served.get(rid)
        if seen is None:
            counts.unknown_request += 1
            continue
        if rid in label_of:
            if label_of[rid] == value:
                counts.duplicate += 1
            else:
                counts.conflicting += 1
            continue
        if label.get("label_time", 0) - seen["served_at"] > label_wait_ms:
            counts.late += 1
            label_of[rid] = -1  # known, but too late to use
            continue
        label_of[rid] = int(value)
    rows = sorted((snap["served_at"], rid) for rid, snap in served.items()
                  if label_of.get(rid, -1) >= 0)
    counts.joined = len(rows)
    counts.unlabelled = sum(1 for rid in served if rid not in label_of)
    x = np.array([[served[rid]["features"][f] for f in features] for _, rid in rows],
                 dtype=np.float32).reshape(len(rows), len(features))
    y = np.array([label_of[rid] for _, rid in rows], dtype=np.int8)
    at = np.array([t for t, _ in rows], dtype=np.int64)
    ids = [rid for _, rid in rows]
    versions = [str(served[rid].get("model_version", "")) for rid in ids]
    return Dataset(tuple(features), x, y, at, ids, versions), counts
