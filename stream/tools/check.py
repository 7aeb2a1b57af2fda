"""``streaminfer check``: did every request a producer recorded end as exactly one outcome?

``streaminfer produce --record FILE`` writes one JSON line per request it sent and Kafka
acknowledged: its request_id, entity_id and a digest of its content. ``streaminfer check
FILE`` reads the predictions and dead-letter topics to their current end (read_committed;
with ``--regions``, each region's own topics and the copies MirrorMaker keeps of the
others') and judges with the one outcome checker (:mod:`processors.outcomes`), per region:

* lost: no prediction and no dead letter anywhere it looked;
* answered twice (a failure under exactly-once; allowed, and counted, at-least-once);
* a prediction and a dead letter for the same request;
* predictions for an entity other than the recorded one (a mixed-up answer);
* model predictions by a version that was neither active nor canary at that time,
  judged against the control topic's history (``<ns>.models``) with a grace period for
  the batch boundary at which a worker applies a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from processors.outcomes import OutcomeReport, check
from stream.exceptions import ConfigurationError
from stream.settings import Settings

GRACE_MS = 30_000  # a worker applies a control change at a batch boundary after loading


def digest(request: Mapping[str, Any]) -> str:
    """What a request asks (model, entity, features), hashed: the same request, re-sent
    or replayed, has the same digest."""
    body = {"model": request.get("model"), "entity_id": request.get("entity_id"),
            "features": request.get("features")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Recorded:
    """One request as its producer recorded it."""

    request_id: str
    entity_id: str
    digest: str


class Recorder:
    """Wraps a sender (``stream.tools.producing.Sender``) and writes one JSON line per
    request it sends. A run that ends without an error had every one acknowledged; one
    that fails (the producer's flush raises) lists requests Kafka may not have taken."""

    def __init__(self, sender: Any, out: TextIO) -> None:
        self.sender, self.out = sender, out
        self.recorded = 0

    def send(self, request: Mapping[str, Any]) -> None:
        self.sender.send(request)
        self.out.write(json.dumps({"request_id": request["request_id"],
                                   "entity_id": request["entity_id"],
                                   "digest": digest(request)}) + "\n")
        self.recorded += 1

    def flush(self, timeout: float = 60.0) -> None:
        self.sender.flush(timeout)
        self.out.flush()


def read_recorded(lines: Iterable[str], source: str) -> dict[str, Recorded]:
    """Parse a record file; errors name the file and line."""
    out: dict[str, Recorded] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            rec = Recorded(str(obj["request_id"]), str(obj["entity_id"]), str(obj["digest"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{source}:{number}: not a line `produce --record` "
                                     f"writes ({type(exc).__name__}: {exc})") from exc
        out[rec.request_id] = rec
    if not out:
        raise ConfigurationError(f"{source}: no recorded requests; write it with "
                                 "`streaminfer produce --record FILE`")
    return out


@dataclass(frozen=True)
class ControlState:
    """Which versions of a model answered from ``at_ms`` on."""

    at_ms: int
    active: str | None
    canary: str | None


class VersionHistory:
    """The control topic's states of each model, in time order."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.states: dict[str, list[ControlState]] = {}
        for r in sorted(records, key=lambda r: int(r.get("at") or 0)):
            self.states.setdefault(str(r["model"]), []).append(
                ControlState(int(r.get("at") or 0), r.get("active_version"),
                             r.get("canary_version")))

    def allowed(self, model: str, version: str, at_ms: int, grace_ms: int = GRACE_MS) -> bool:
        """Was ``version`` active or canary at some moment in ``[at_ms - grace, at_ms]``?
        A model with no control history is not judged."""
        states = self.states.get(model)
        if not states:
            return True
        window_start = at_ms - grace_ms
        for i, state in enumerate(states):
            ends = states[i + 1].at_ms if i + 1 < len(states) else None
            overlaps = state.at_ms <= at_ms and (ends is None or ends >= window_start)
            if overlaps and version in (state.active, state.canary):
                return True
        return False


@dataclass
class RegionVerdict:
    """The judgement for one region's view of the answers."""

    region: str
    outcomes: OutcomeReport
    wrong_entity: set[str] = field(default_factory=set)
    wrong_version: dict[str, str] = field(default_factory=dict)  # request id -> version

    def ok(self, allow_duplicates: bool) -> bool:
        return (self.outcomes.ok(allow_duplicates) and not self.wrong_entity
                and not self.wrong_version)

    def line(self) -> str:
        return (f"{self.region}: {self.outcomes.summary()}, wrong entity "
                f"{len(self.wrong_entity)}, version neither active nor canary "
                f"{len(self.wrong_version)}")


def judge(region: str, recorded: Mapping[str, Recorded],
          predictions: Sequence[Mapping[str, Any]], dead_letters: Sequence[Mapping[str, Any]],
          history: VersionHistory) -> RegionVerdict:
    """One region's verdict from what it holds."""
    verdict = RegionVerdict(region, check(recorded, predictions, dead_letters))
    for p in predictions:
        rec = recorded.get(p["request_id"])
        if rec is None:
            continue
        if p.get("entity_id") != rec.entity_id:
            verdict.wrong_entity.add(rec.request_id)
        if not p.get("fallback") and not history.allowed(
                str(p.get("model")), str(p.get("model_version")), int(p.get("predicted_at") or 0)):
            verdict.wrong_version[rec.request_id] = str(p.get("model_version"))
    return verdict


def read_topics(settings: Settings, topics: list[str], timeout: float) -> list[dict[str, Any]]:
    """Every decodable value of those of ``topics`` that exist, up to their current end
    (read_committed)."""
    from stream.clients import TopicReader

    if not topics:
        return []
    return [r.value for r in TopicReader(settings, topics, timeout=timeout,
                                         from_beginning=True, until_end=True)
            if r.value is not None]


def run_check(settings: Settings, recorded: Mapping[str, Recorded], timeout: float = 10.0
              ) -> list[RegionVerdict]:
    """Read each region (or the one cluster) and judge it."""
    from stream.connect.reachability import require_kafka
    from stream.regions.failover import parse_regions, region_settings

    regions = parse_regions(settings.regions) if settings.regions else {"": settings.bootstrap_servers}
    verdicts = []
    for name, bootstrap in regions.items():
        here = region_settings(settings, bootstrap) if name else settings
        others = [o for o in regions if o != name]
        present = require_kafka(here).topics  # one metadata request per region
        own = [here.predictions_topic, here.dlq_topic]
        answers = [t for t in own + [f"{o}.{t}" for o in others for t in own] if t in present]
        values = read_topics(here, answers, timeout)
        predictions = [v for v in values if "score" in v]
        dead = [v for v in values if "stage" in v]
        control = [t for t in [f"{here.namespace}.models"] if t in present]
        history = VersionHistory(read_topics(here, control, timeout))
        verdicts.append(judge(name or "cluster", recorded, predictions, dead, history))
    return verdicts


def record_file(path: Path) -> dict[str, Recorded]:
    """Read a record file (``-``: stdin is not supported: the checker needs it whole)."""
    if not path.exists():
        raise ConfigurationError(f"{path}: no such record file; write one with "
                                 "`streaminfer produce --record FILE`")
    with path.open() as f:
        return read_recorded(f, str(path))
