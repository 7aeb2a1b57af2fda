"""Region-aware producing: send to the preferred region, move to the next when it is down,
come back when it has been healthy for a while; nothing acknowledged is lost.

Every request is kept until its delivery is acknowledged. A region's producer gives up on
a message after ``region_down_after_s`` (its delivery timeout); such a failure declares
the region down and the message is sent again to the next region, so a request is
buffered at most about that long before it moves. The preferred region is probed in the
background while another serves; after ``region_failback_after_s`` of answers the
producer returns to it. Re-sending can duplicate a request whose acknowledgement was lost
with the region: downstream de-duplication by request_id absorbs that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer

from stream.connect import kafka_config
from stream.connect.queue_room import Block, QueueFull, produce_when_room
from stream.connect.request_encoding import Encoded, RequestEncoder
from stream.exceptions import ConfigurationError, KafkaOperationError
from stream.regions.monitor import RegionMonitor
from stream.settings import Settings

log = logging.getLogger(__name__)

# Delivery errors that say "this region does not answer", not "this record is refused".
REGION_DOWN_CODES = {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
                     KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_ENOUGH_REPLICAS,
                     KafkaError.REQUEST_TIMED_OUT}


def parse_named(spec: str, flag: str, shape: str, example: str) -> dict[str, str]:
    """``name=value;name=value`` -> {name: value}, in the order given."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(";") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"{flag}: {part!r} is not {shape}; example: {example}")
        if name.strip() in out:
            raise ConfigurationError(f"{flag}: region {name.strip()!r} is listed twice")
        out[name.strip()] = value.strip()
    return out


def parse_regions(spec: str) -> dict[str, str]:
    """``east=h1:9092,h2:9092;west=h3:9092`` -> {name: bootstrap}, in preference order."""
    out = parse_named(spec, "--regions / STREAMINFER_REGIONS", "name=host:port[,host:port]",
                      "east=127.0.0.1:9092;west=127.0.0.1:9192")
    if not out:
        raise ConfigurationError("--regions is empty; list at least one name=bootstrap")
    return out


def region_settings(settings: Settings, bootstrap: str) -> Settings:
    """The same settings pointed at one region."""
    return settings.model_copy(update={"bootstrap_servers": bootstrap})


@dataclass
class RegionEvent:
    """A failover or failback, for logs and tests."""

    at: float
    kind: str  # failover | failback
    source: str
    target: str
    reason: str


REFUSED_KEPT = 1000  # refused request ids kept for the error message and tests


class FailoverProducer:
    """Produces InferenceRequests to the first healthy region of ``settings.regions``."""

    def __init__(self, settings: Settings, topic: str | None = None,
                 on_acked: Callable[[str, str], None] | None = None) -> None:
        """``on_acked(request_id, region)`` is called once per acknowledged request (from
        the thread that polls), for callers that keep their own record."""
        if not settings.regions:
            raise ConfigurationError("FailoverProducer needs --regions / STREAMINFER_REGIONS")
        self.settings = settings
        self.regions = parse_regions(settings.regions)
        self.order = list(self.regions)
        self.topic = topic or settings.requests_topic
        self.active = self.order[0]
        # Counts only: a producer may run for days, so nothing here grows with the stream
        # (it kept every acknowledged id once). Bounded: the in-flight requests
        # (``_pending``, capped by librdkafka's queue) and the first refusals.
        self.acked: Counter[str] = Counter()  # region -> acknowledged requests
        self.resent = 0
        self.refused: dict[str, str] = {}  # request_id -> error, the first REFUSED_KEPT
        self.refused_total = 0
        self.events: list[RegionEvent] = []
        self._encode = RequestEncoder(settings)  # seals sensitive features (field keys)
        self._pending: dict[str, Encoded] = {}  # request_id -> (key, value, headers)
        self._retry: list[str] = []
        self._producers: dict[str, Producer] = {}
        self._lock = threading.Lock()
        self._monitor: RegionMonitor | None = None
        self._on_acked = on_acked

    def _producer(self, region: str) -> Producer:
        if region not in self._producers:
            conf = kafka_config.client_producer(region_settings(self.settings,
                                                                self.regions[region]))
            timeout_ms = int(self.settings.region_down_after_s * 1000)
            conf.update({"delivery.timeout.ms": timeout_ms, "log_level": 2,
                         "request.timeout.ms": min(timeout_ms, 30_000)})
            self._producers[region] = Producer(conf)
        return self._producers[region]

    def _on_delivery(self, region: str, request_id: str) -> Any:
        def callback(err: KafkaError | None, _msg: Any) -> None:
            with self._lock:
                if err is None:
                    if self._pending.pop(request_id, None) is not None:
                        self.acked[region] += 1
                        if self._on_acked is not None:
                            self._on_acked(request_id, region)
                    return
                if err.code() not in REGION_DOWN_CODES and not err.retriable():
                    self.refused_total += 1  # this record, not the region
                    if len(self.refused) < REFUSED_KEPT:
                        self.refused[request_id] = str(err)
                    self._pending.pop(request_id, None)
                    return
                self._retry.append(request_id)
                if region == self.active:
                    self._fail_over(region, str(err))
        return callback

    def _fail_over(self, region: str, reason: str) -> None:
        following = self.order[(self.order.index(region) + 1) % len(self.order)]
        if following == region:
            return
        self.active = following
        self.events.append(RegionEvent(time.time(), "failover", region, following, reason))
        log.warning("region %s declared down (%s); producing to %s", region, reason, following)

    def send(self, request: Mapping[str, Any]) -> None:
        """Queue one request for the active region."""
        rid = str(request["request_id"])
        encoded = self._encode(request)
        with self._lock:
            self._pending[rid] = encoded
        self._produce(rid, encoded)
        self.poll(0)

    def _produce(self, rid: str, encoded: Encoded) -> None:
        key, value, headers = encoded
        while True:
            region = self.active
            # A client: a full queue slows the sender down instead of dropping a request,
            # until the active region changes (then the request goes there).
            try:
                produce_when_room(self._producer(region), self.topic, value, key,
                                  Block(abandon=lambda r=region: self.active != r),  # type: ignore[misc]
                                  headers=headers, on_delivery=self._on_delivery(region, rid))
                return
            except QueueFull:
                continue

    def poll(self, timeout: float = 0.0) -> None:
        """Serve callbacks, re-send what a failed region gave back, probe for failback."""
        for producer in list(self._producers.values()):
            producer.poll(timeout if producer is self._producers.get(self.active) else 0)
        with self._lock:
            retry, self._retry = self._retry, []
            items = [(rid, self._pending[rid]) for rid in retry if rid in self._pending]
        for rid, encoded in items:
            self.resent += 1
            self._produce(rid, encoded)
        self._maybe_fail_back()

    def _maybe_fail_back(self) -> None:
        home = self.order[0]
        if self.active == home:
            return
        if self._monitor is None:  # probes home in the background while away from it
            self._monitor = RegionMonitor(self.settings, {home: self.regions[home]})
        healthy = self._monitor.healthy_for(home)
        if healthy < self.settings.region_failback_after_s:
            return
        with self._lock:
            source, self.active = self.active, home
        self.events.append(RegionEvent(time.time(), "failback", source, home,
                                       f"answered for {healthy:.0f}s"))
        log.info("region %s healthy again; producing to it", home)
        self._monitor.close()
        self._monitor = None

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every request is acknowledged somewhere; raise if some are not."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.poll(0.1)
            with self._lock:
                if not self._pending and not self._retry:
                    if self.refused:
                        rid, err = next(iter(self.refused.items()))
                        raise KafkaOperationError(f"{self.refused_total} requests refused for "
                                                  f"good, first {rid}: {err}")
                    return
        raise KafkaOperationError(f"{len(self._pending)} requests unacknowledged after "
                                  f"{timeout:.0f}s in every region; are the regions up?",
                                  retriable=True)

    @property
    def tracked(self) -> int:
        """Requests held in memory now (in flight or waiting to be re-sent): what the
        producer's memory grows with; flat over a long stream."""
        with self._lock:
            return len(self._pending) + len(self._retry) + len(self.refused)

    def close(self) -> None:
        """Stop probing the preferred region (call after the last flush)."""
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
