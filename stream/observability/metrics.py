"""Worker metrics: one typed object built from an injected registry, recorded through hooks.

Nothing is created at import time; tests build their own registry. Multi-process
workers expose one endpoint per process (``--health-port P`` gives process i the port
P+i), so every series is exact for its process and Prometheus aggregates with
``sum by (...)``; no shared multiprocess directory is needed.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 2000, 5000)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))


@dataclass(frozen=True)
class WorkerMetrics:
    """Every series a worker exports."""

    registry: CollectorRegistry
    consumed: Counter
    outcomes: Counter
    e2e_latency: Histogram
    stage_latency: Histogram
    batch_size: Histogram
    consumer_lag: Gauge
    assigned_partitions: Gauge
    rebalances: Counter
    rebalance_pause: Histogram
    model_info: Gauge
    model_loads: Counter
    probe_ok: Gauge
    probe_latency: Histogram
    probe_failures: Counter
    scores: Histogram
    scores_out_of_bounds: Counter
    loop_last_iteration: Gauge
    kafka_reachable: Gauge
    kafka_errors: Counter
    producer_queue: Gauge
    broker_rtt: Gauge
    broker_int_latency: Gauge
    breaker_state: Gauge
    fallback_reasons: Counter
    feature_cache: Counter
    feature_age: Histogram
    features_degraded: Counter
    feature_corrupt: Counter
    control_refused: Counter
    memory_entries: Gauge
    internal_errors: Counter
    feature_unknown_entities: Counter
    version_requests: Counter
    version_errors: Counter
    version_fallbacks: Counter
    version_inference: Histogram
    canary_share: Gauge
    canary_decisions: Counter
    shadow_scored: Counter
    shadow_disagreements: Counter
    shadow_delta: Histogram
    duplicates_suppressed: Counter
    request_id_conflicts: Counter
    replay_markers: Counter
    region_serving: Gauge
    region_up: Gauge
    region_switches: Counter
    region_seeded: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, process_metrics: bool = True) -> WorkerMetrics:
        """Register every series on ``registry`` (and the process/platform collectors)."""
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        r = registry
        return cls(
            registry=r,
            consumed=Counter("streaminfer_requests_consumed", "Request records consumed.",
                             ["topic"], registry=r),
            outcomes=Counter(
                "streaminfer_outcomes",
                "Consumed requests by outcome once durable: outcome=model|fallback|dead_letter; "
                "kind=the fallback kind or the dead-letter stage ('' for model predictions).",
                ["model", "version", "outcome", "kind"], registry=r),
            e2e_latency=Histogram(
                "streaminfer_e2e_latency_seconds",
                "Request created_at to its prediction being durable (delivered/committed).",
                ["model"], buckets=LATENCY_BUCKETS, registry=r),
            stage_latency=Histogram(
                "streaminfer_stage_seconds",
                "Time per batch in each stage: consume, decode, infer, encode, produce, commit.",
                ["stage"], buckets=STAGE_BUCKETS, registry=r),
            batch_size=Histogram("streaminfer_batch_size", "Records per consumed batch.",
                                 buckets=BATCH_BUCKETS, registry=r),
            consumer_lag=Gauge(
                "streaminfer_consumer_lag",
                "Records behind the high watermark per assigned partition (librdkafka stats).",
                ["topic", "partition"], registry=r),
            assigned_partitions=Gauge("streaminfer_assigned_partitions",
                                      "Partitions this worker holds.", registry=r),
            rebalances=Counter("streaminfer_rebalances",
                               "Rebalance callbacks: event=assign|revoke|lost.",
                               ["event"], registry=r),
            rebalance_pause=Histogram(
                "streaminfer_rebalance_pause_seconds",
                "From giving partitions up (revoke callback) to this member's next "
                "assignment: how long the moved partitions wait for an owner at most.",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r),
            model_info=Gauge("streaminfer_model_info",
                             "1 for the model version this worker serves.",
                             ["model", "version"], registry=r),
            model_loads=Counter("streaminfer_model_loads", "Model loads: result=ok|error.",
                                ["model", "result"], registry=r),
            probe_ok=Gauge("streaminfer_model_probe_ok",
                           "1 when the last golden-input probe passed, 0 when it failed.",
                           ["model", "version"], registry=r),
            probe_latency=Histogram("streaminfer_model_probe_seconds",
                                    "Golden-input probe inference time.", ["model", "version"],
                                    buckets=STAGE_BUCKETS, registry=r),
            probe_failures=Counter("streaminfer_model_probe_failures",
                                   "Failed probes: reason=output|latency|error.",
                                   ["model", "version", "reason"], registry=r),
            scores=Histogram("streaminfer_score", "Distribution of model scores.",
                             ["model", "version"], buckets=SCORE_BUCKETS, registry=r),
            scores_out_of_bounds=Counter(
                "streaminfer_score_out_of_bounds",
                "Scores outside the model's guardrail bounds (model.json 'guardrails').",
                ["model", "version"], registry=r),
            loop_last_iteration=Gauge(
                "streaminfer_loop_last_iteration_timestamp_seconds",
                "Unix time the worker loop last went round (the /healthz watchdog).", registry=r),
            kafka_reachable=Gauge("streaminfer_kafka_reachable",
                                  "0 while librdkafka reports all brokers down.", registry=r),
            kafka_errors=Counter("streaminfer_kafka_errors", "librdkafka error callbacks.",
                                 ["client", "code"], registry=r),
            producer_queue=Gauge("streaminfer_producer_queue_messages",
                                 "Messages in the producer's local queue (librdkafka msg_cnt).",
                                 registry=r),
            broker_rtt=Gauge("streaminfer_kafka_broker_rtt_seconds",
                             "Average request round-trip time per broker (librdkafka rtt).",
                             ["client", "broker"], registry=r),
            broker_int_latency=Gauge(
                "streaminfer_kafka_broker_int_latency_seconds",
                "Average producer-queue-to-send latency per broker (librdkafka int_latency).",
                ["client", "broker"], registry=r),
            breaker_state=Gauge(
                "streaminfer_breaker_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["breaker"],
                registry=r),
            fallback_reasons=Counter(
                "streaminfer_fallback_reasons",
                "Why requests got fallbacks: model_error, timeout, breaker_open, deadline, "
                "features_missing, shed_load.", ["model", "reason"], registry=r),
            feature_cache=Counter(
                "streaminfer_feature_cache",
                "Feature rows looked up: result=hit (fresh in the in-process cache) or miss "
                "(read from Redis); hit ratio = hit / (hit + miss).", ["result"], registry=r),
            feature_age=Histogram(
                "streaminfer_feature_age_seconds",
                "Age of the stored feature rows used (now - their _updated_at).",
                buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400), registry=r),
            features_degraded=Counter(
                "streaminfer_features_degraded",
                "Requests served stale or default features because Redis could not answer "
                "or a stored value was corrupt.",
                ["view"], registry=r),
            feature_corrupt=Counter(
                "streaminfer_feature_corrupt",
                "Stored feature fields read that are not valid values of their type (text, "
                "NaN, inf, overflow); served as the cached value or the default.",
                ["view"], registry=r),
            memory_entries=Gauge(
                "streaminfer_memory_entries",
                "Entries held in memory by structures that could grow with the stream, each "
                "bounded (what: poison, answered_pending, feature_cache).",
                ["what"], registry=r),
            control_refused=Counter(
                "streaminfer_control_records_refused",
                "Model control records not acted on (reason: undecodable, invalid).",
                ["reason"], registry=r),
            internal_errors=Counter(
                "streaminfer_internal_errors",
                "Unexpected errors while processing a batch (scope: batch, retried and then "
                "processed record by record; record, the record dead-lettered).",
                ["scope"], registry=r),
            feature_unknown_entities=Counter(
                "streaminfer_feature_unknown_entities",
                "Lookups of entities with no stored features (defaults used).", registry=r),
            version_requests=Counter(
                "streaminfer_version_requests",
                "Requests routed to each version: role=active|canary.",
                ["model", "version", "role"], registry=r),
            version_errors=Counter(
                "streaminfer_version_errors",
                "Requests a version failed: model errors, timeouts, and (canary) scores "
                "outside the guardrails.", ["model", "version", "role"], registry=r),
            version_fallbacks=Counter(
                "streaminfer_version_fallbacks",
                "Requests routed to a version that something else answered (its error, "
                "timeout, open breaker or guardrail).", ["model", "version", "role"], registry=r),
            version_inference=Histogram(
                "streaminfer_version_inference_seconds",
                "Inference call time per version (one observation per batch and version).",
                ["model", "version", "role"], buckets=STAGE_BUCKETS, registry=r),
            canary_share=Gauge(
                "streaminfer_canary_share",
                "Share of entities routed to the canary version (0 when none).",
                ["model", "version"], registry=r),
            canary_decisions=Counter(
                "streaminfer_canary_decisions",
                "Automatic canary decisions by this worker: decision=rollback|promote; "
                "reason=error_rate|fallback_rate|p99|psi|healthy.",
                ["model", "version", "decision", "reason"], registry=r),
            shadow_scored=Counter(
                "streaminfer_shadow_scored",
                "Requests a shadow version scored: result=ok|error|dropped (queue full).",
                ["model", "version", "result"], registry=r),
            shadow_disagreements=Counter(
                "streaminfer_shadow_disagreements",
                "Shadow and active scores on different sides of the decision threshold.",
                ["model", "version"], registry=r),
            shadow_delta=Histogram(
                "streaminfer_shadow_score_delta",
                "|shadow score - active score| per request.", ["model", "version"],
                buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), registry=r),
            duplicates_suppressed=Counter(
                "streaminfer_duplicates_suppressed",
                "Predictions not sent because their request_id was answered already "
                "(--dedupe-ttl-s).", registry=r),
            request_id_conflicts=Counter(
                "streaminfer_request_id_conflicts",
                "Requests reusing the request_id of an answered request with other content: "
                "answered, not suppressed (a client bug, or someone trying to silence another "
                "client's request).", registry=r),
            replay_markers=Counter(
                "streaminfer_replay_markers",
                "Requests carrying a replay marker, by verdict: signed (by a trusted key: "
                "answered however late) or unsigned / unknown_key / bad_signature (treated as "
                "new requests; someone other than the DLQ operator set the header).",
                ["verdict"], registry=r),
            region_serving=Gauge("streaminfer_region_serving",
                                 "1 for the region this worker consumes and produces in.",
                                 ["region"], registry=r),
            region_up=Gauge("streaminfer_region_up",
                            "0 once a region went --region-down-after-s without answering "
                            "metadata.", ["region"], registry=r),
            region_switches=Counter("streaminfer_region_switches",
                                    "Failovers and failbacks between regions.",
                                    ["kind", "source", "target"], registry=r),
            region_seeded=Counter("streaminfer_region_answered_seeded",
                                  "Request ids marked answered from a region's predictions "
                                  "on entering it (cross-region duplicate control).",
                                  registry=r),
        )

    # --- hooks fed by librdkafka callbacks ----------------------------------------------
    def on_consumer_stats(self, stats_json: str) -> None:
        """librdkafka statistics of the consumer: lag per partition, broker latencies."""
        stats: dict[str, Any] = json.loads(stats_json)
        for topic, tdata in stats.get("topics", {}).items():
            for pid, pdata in tdata.get("partitions", {}).items():
                if pid == "-1" or pdata.get("fetch_state") in (None, "none", "stopped"):
                    continue
                lag = pdata.get("consumer_lag", -1)
                if lag is not None and lag >= 0:
                    self.consumer_lag.labels(topic, pid).set(lag)
        self._brokers("consumer", stats)

    def on_producer_stats(self, stats_json: str) -> None:
        """librdkafka statistics of the producer: local queue depth, broker latencies."""
        stats: dict[str, Any] = json.loads(stats_json)
        self.producer_queue.set(stats.get("msg_cnt", 0))
        self._brokers("producer", stats)

    def _brokers(self, client: str, stats: dict[str, Any]) -> None:
        for name, b in stats.get("brokers", {}).items():
            if b.get("nodeid", -1) < 0:
                continue  # bootstrap placeholders
            rtt = b.get("rtt", {}).get("avg", 0)
            self.broker_rtt.labels(client, name).set(rtt / 1e6)
            if client == "producer":
                self.broker_int_latency.labels(client, name).set(
                    b.get("int_latency", {}).get("avg", 0) / 1e6)

    def forget_partitions(self, parts: list[tuple[str, int]]) -> None:
        """Drop the lag series of partitions this worker no longer holds."""
        for topic, partition in parts:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(topic, str(partition))
