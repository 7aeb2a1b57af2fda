"""``streaminfer worker --autoscale MIN..MAX``: worker processes from consumer lag.

Every ``--autoscale-interval-s`` the parent reads the group's committed lag on the
request topic, applies :class:`~stream.worker.scaling.ScaleRule` (KEDA's formula, capped
by the partitions) and the HPA's stabilisation windows, and starts or stops worker
processes to match. Each decision is logged (the ``scale`` field of a JSON log line) and
metered. Processes 0..MIN-1 are static group members (with ``--worker-id``); the elastic
ones above MIN join as dynamic members, so a stopped one hands its partitions over at
once instead of after the session timeout. Stopping takes the highest index first and is
graceful: the process finishes its batch, commits and leaves the group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.observability.health import HealthServer
from stream.observability.http_access import http_access
from stream.observability.status import group_consumer, read_lags
from stream.settings import Settings
from stream.worker.scaling import ScaleRule, Stabiliser, parse_range
from stream.worker.supervisor import ProcessPool, StopFlag, preflight

log = logging.getLogger(__name__)


class GroupLag:
    """The worker group's lag on the request topic, read with one long-lived consumer that
    never joins the group (committed offsets and high watermarks only)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.requests_topic
        self.consumer = group_consumer(settings)

    def read(self, timeout_s: float = 10.0) -> tuple[int, int]:
        """(total lag, partitions). A partition with no committed offset counts from its
        low watermark, as the workers (auto.offset.reset earliest) would read it."""
        lags = read_lags(self.consumer, self.topic, timeout_s)
        if lags is None:
            raise KafkaException(f"topic {self.topic} is missing")
        total = sum(max(0, p.end - (p.start if p.committed is None else p.committed))
                    for p in lags)
        return total, len(lags)

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


@dataclass
class ScaleMetrics:
    """The autoscaler's Prometheus series."""

    lag: Gauge
    desired: Gauge
    processes: Gauge
    decisions: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ScaleMetrics:
        """Register the series in ``registry``."""
        return cls(
            Gauge("streaminfer_autoscale_lag", "The group's lag at the last reading, records.",
                  registry=registry),
            Gauge("streaminfer_autoscale_desired", "Processes the rule asks for, after "
                  "stabilisation.", registry=registry),
            Gauge("streaminfer_autoscale_processes", "Worker processes running.",
                  registry=registry),
            Counter("streaminfer_autoscale_decisions", "Changes of the process count.",
                    ["direction"], registry=registry))


def autoscale(settings: Settings) -> int:
    """Run worker processes between the ``--autoscale`` bounds until a signal."""
    minimum, maximum = parse_range(settings.autoscale or "1..1")
    preflight(settings)
    stop = StopFlag("the autoscaler and its worker processes")
    registry = CollectorRegistry()
    metrics = ScaleMetrics.create(registry)
    if settings.autoscale_metrics_port is not None:
        HealthServer(None, registry, settings.health_host, settings.autoscale_metrics_port,
                     http_access(settings)).start()
    pool = ProcessPool(settings, elastic_from=minimum)
    stabiliser = Stabiliser(settings.autoscale_up_window_s, settings.autoscale_down_window_s)
    reader = GroupLag(settings)
    log.info("autoscaling %d..%d worker processes on the lag of %s (threshold %d, "
             "activation %d, every %.0f s, windows up %.0f s / down %.0f s)", minimum, maximum,
             settings.group, settings.autoscale_lag_threshold,
             settings.autoscale_activation_lag, settings.autoscale_interval_s,
             settings.autoscale_up_window_s, settings.autoscale_down_window_s)
    target = minimum
    next_reading = time.monotonic()
    try:
        while not stop.set and pool.heal():
            if time.monotonic() >= next_reading:
                next_reading = time.monotonic() + settings.autoscale_interval_s
                target = _decide(settings, reader, stabiliser, metrics, pool.size(), target,
                                 minimum, maximum)
            _converge(pool, target)
            metrics.processes.set(pool.size())
            time.sleep(0.2)
    finally:
        reader.close()
    if pool.failed:
        log.error("%s", pool.failed)
    return pool.stop_all()


def _decide(settings: Settings, reader: GroupLag, stabiliser: Stabiliser,
            metrics: ScaleMetrics, current: int, target: int, minimum: int,
            maximum: int) -> int:
    """Read the lag and return the process count to converge to (``target`` unchanged
    when the lag cannot be read)."""
    try:
        lag, partitions = reader.read()
    except KafkaException as exc:
        log.warning("autoscale: cannot read the lag of %s (%s); keeping %d processes",
                    settings.group, exc, target)
        return target
    rule = ScaleRule(minimum, maximum, settings.autoscale_lag_threshold,
                     settings.autoscale_activation_lag, partitions)
    recommended = rule.desired(lag, max(current, 1))
    decided = stabiliser.decide(time.monotonic(), recommended, target)
    metrics.lag.set(lag)
    metrics.desired.set(decided)
    if decided != target:
        direction = "up" if decided > target else "down"
        metrics.decisions.labels(direction).inc()
        capped = " (capped by the partitions)" if rule.ceiling < maximum \
            and recommended == rule.ceiling else ""
        log.info("autoscale %s: lag %d over %d partitions, rule %d%s, processes %d -> %d",
                 direction, lag, partitions, recommended, capped, target, decided,
                 extra={"scale": {"direction": direction, "lag": lag, "partitions": partitions,
                                  "recommended": recommended, "from": target, "to": decided,
                                  "at": round(time.time(), 3)}})
    return decided


def _converge(pool: ProcessPool, target: int) -> None:
    """Start the lowest missing indices or stop the highest running ones."""
    while pool.size() > target:
        pool.stop(max(pool.procs))
    for i in range(target):
        if i not in pool.procs and not pool.start(i):
            break  # its predecessor is still leaving: the next round starts it
