"""librdkafka statistics become lag and latency gauges."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from stream.observability.metrics import WorkerMetrics


def value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return registry.get_sample_value(name, labels)


def test_consumer_stats_give_lag_per_fetched_partition_and_broker_rtt() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics.create(registry, process_metrics=False)
    stats = {
        "topics": {"ns.requests": {"partitions": {
            "0": {"fetch_state": "active", "consumer_lag": 42},
            "1": {"fetch_state": "none", "consumer_lag": 99},     # not ours: skipped
            "-1": {"fetch_state": "active", "consumer_lag": 5},   # internal UA partition
            "2": {"fetch_state": "active", "consumer_lag": -1},   # unknown yet
        }}},
        "brokers": {"127.0.0.1:9092/1": {"nodeid": 1, "rtt": {"avg": 2500}},
                    "127.0.0.1:9092/bootstrap": {"nodeid": -1, "rtt": {"avg": 1}}},
    }
    m.on_consumer_stats(json.dumps(stats))
    assert value(registry, "streaminfer_consumer_lag", {"topic": "ns.requests",
                                                        "partition": "0"}) == 42
    for p in ("1", "-1", "2"):
        assert value(registry, "streaminfer_consumer_lag",
                     {"topic": "ns.requests", "partition": p}) is None
    assert value(registry, "streaminfer_kafka_broker_rtt_seconds",
                 {"client": "consumer", "broker": "127.0.0.1:9092/1"}) == 0.0025
    m.forget_partitions([("ns.requests", 0)])
    assert value(registry, "streaminfer_consumer_lag", {"topic": "ns.requests",
                                                        "partition": "0"}) is None


def test_producer_stats_give_queue_depth_and_int_latency() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics.create(registry, process_metrics=False)
    m.on_producer_stats(json.dumps({"msg_cnt": 17, "brokers": {
        "b/1": {"nodeid": 1, "rtt": {"avg": 1000}, "int_latency": {"avg": 4000}}}}))
    assert value(registry, "streaminfer_producer_queue_messages", {}) == 17
    assert value(registry, "streaminfer_kafka_broker_int_latency_seconds",
                 {"client": "producer", "broker": "b/1"}) == 0.004
