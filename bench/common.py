"""What every benchmarked system shares: the corpus, the serving code, and the plumbing
helpers of the harness (process stats, topic end offsets).

Every system answers requests with the same :class:`processors.pipeline.Pipeline` (decode,
features from Redis through the same enricher and cache, ONNX Runtime, encode), built
by the same :func:`stream.worker.assembly.build_serving`; only the Kafka plumbing around it
differs. That is the point of the comparison.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from processors.features.store import RedisFeatureStore
from processors.features.views import FeatureRepo
from processors.model import DEFAULT_MODEL_DIR, OnnxModel, RuntimeOptions
from processors.pipeline import Pipeline
from schemas.serde import Encoder
from stream.clients import synthetic_requests
from stream.connect.redis_pool import make_redis
from stream.settings import Settings

ENTITIES = 10_000


def say(msg: str) -> None:
    """Progress on stderr."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Rec:
    """A record handed to the pipeline by plumbing that is not confluent-kafka's consumer."""

    _value: bytes | None
    _key: bytes | None
    _topic: str
    _partition: int
    _offset: int
    _headers: Any = None
    _timestamp: int = 0

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset

    def headers(self) -> Any:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)


def serving_pipeline(settings: Settings, worker_id: str) -> Pipeline:
    """The worker's pipeline, for plumbing other than the worker's."""
    from stream.worker.assembly import build_serving

    model = OnnxModel.load(settings.model_path, RuntimeOptions(
        settings.onnx_intra_op_threads, settings.onnx_inter_op_threads,
        settings.onnx_allow_spinning))
    return build_serving(settings, model, worker_id, lambda *_a: None).pipeline


def request_dicts(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Requests carrying only their request-time features: the rest come from Redis."""
    repo = FeatureRepo.for_model(DEFAULT_MODEL_DIR)
    stored = {n for v in repo.views for n in v.names} if repo else set()
    out = []
    for req in synthetic_requests(count, entities=ENTITIES, seed=seed):
        req["features"] = {k: v for k, v in req["features"].items() if k not in stored}
        out.append(req)
    return out


def encode_corpus(requests: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs, Avro single-object encoded."""
    enc = Encoder("InferenceRequest")
    return [(str(r["entity_id"]).encode(), enc(r)) for r in requests]


def load_features(settings: Settings, seed: int = 3) -> int:
    """Write every entity's stored view rows to Redis (the feature pipeline's output)."""
    repo = FeatureRepo.for_model(DEFAULT_MODEL_DIR)
    assert repo is not None
    store = RedisFeatureStore(make_redis(settings), settings.namespace)
    rng = np.random.default_rng(seed)
    now = time.time_ns() // 10**6
    written = 0
    for view in repo.views:
        # Values of each feature's declared type (counts are integers): a float in an int
        # feature is a corrupt value the worker repairs, logs and flags as degraded.
        rows = [(view.name, f"card-{i}",
                 {f.name: float(rng.integers(0, 50)) if f.type == "int" else float(rng.random())
                  for f in view.features}, now)
                for i in range(ENTITIES)]
        for start in range(0, len(rows), 1000):
            store.write(rows[start:start + 1000], {view.name: 24 * 3600})
        written += len(rows)
    return written


@dataclass
class ProcSample:
    """CPU seconds (user + system) and peak RSS of a process, read from /proc."""

    cpu_s: float
    peak_rss_mb: float


def proc_sample(pid: int) -> ProcSample | None:
    """The process's CPU time and peak RSS now (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as fh:
            hwm = next((line.split()[1] for line in fh if line.startswith("VmHWM:")), "0")
    except (OSError, StopIteration):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcSample((int(fields[11]) + int(fields[12])) / ticks, int(hwm) / 1024)


def process_tree_sample(pid: int) -> ProcSample | None:
    """:func:`proc_sample` summed over ``pid`` and its children (a supervisor's workers)."""
    root = proc_sample(pid)
    if root is None:
        return None
    total = ProcSample(root.cpu_s, root.peak_rss_mb)
    for child in children(pid):
        s = proc_sample(child)
        if s is not None:
            total.cpu_s += s.cpu_s
            total.peak_rss_mb += s.peak_rss_mb
    return total


def children(pid: int) -> Iterator[int]:
    """Every descendant of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(x) for x in fh.read().split()]
    except OSError:
        return
    for kid in kids:
        yield kid
        yield from children(kid)


@dataclass
class Latencies:
    """Milliseconds from intended send time to the prediction being read, and the same
    split by stage (``stages``: name -> milliseconds per request): waiting to be read by the
    system (intended time -> ``received_at``), served (``received_at`` -> ``predicted_at``),
    delivered (``predicted_at`` -> read by the benchmark's consumer)."""

    values: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)

    def stage_pct(self, stage: str, q: float) -> float:
        """The q-th percentile of one stage (NaN when empty)."""
        return _pct(self.stages.get(stage) or [], q)

    def pct(self, q: float) -> float:
        """The q-th percentile (NaN when empty)."""
        return _pct(self.values, q)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")

