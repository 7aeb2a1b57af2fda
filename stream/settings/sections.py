"""The settings, one class per section. ``Settings`` inherits every section, so each
field keeps its flat ``STREAMINFER_<FIELD>`` variable and ``--field-name`` flag, while
code and docs can see which concern a setting belongs to (the configuration reference
in docs/configuration.md is grouped by these sections)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from stream.settings.security import EncryptionSection, SecurityProtocol, SecuritySection

# Re-exported: one import for every section.
__all__ = ["EncryptionSection", "SecurityProtocol", "SecuritySection"]

Guarantee = Literal["at-least-once", "exactly-once"]


def _default_model_path() -> Path:
    from processors.model import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


class KafkaSection(BaseModel):
    """Kafka connection and topics."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]."
    )
    namespace: str = Field(
        "streaminfer", pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Topic prefix of the eight topics: <namespace>.requests, .predictions, "
                    ".dlq, .events, .shadow, .feedback, .inputs and .models (the control "
                    "topic).",
    )
    partitions: int = Field(4, ge=1, le=10_000, description="Partitions per topic on create.")
    replication_factor: int = Field(
        3, ge=1, le=32, description="Replication factor on create (the dev cluster uses 1)."
    )
    min_insync_replicas: int = Field(
        2, ge=1, le=32, description="min.insync.replicas on create (<= replication factor)."
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, le=300, description="How long a command waits for Kafka to answer before "
                                       "it stops with an error naming the address (workers "
                                       "keep retrying instead).")
    socket_timeout_ms: int = Field(
        5_000, ge=1_000, le=300_000,
        description="librdkafka socket.timeout.ms: a request with no answer for this long "
                    "fails and its connection is closed, so the client asks where the "
                    "partition or coordinator went. A broker cut off the network or frozen "
                    "answers nothing and resets nothing: at librdkafka's 60 s default the "
                    "workers waited on it through the whole fault (docs/chaos.md).")


class WorkerSection(BaseModel):
    """The inference worker: group, batching, delivery guarantee and its timeouts, processes."""

    group_id: str | None = Field(None, description="Consumer group (default <namespace>.inference).")
    guarantee: Guarantee = Field(
        "at-least-once", description="Delivery guarantee: at-least-once or exactly-once."
    )
    batch_max_records: int = Field(500, ge=1, le=100_000, description="Max requests per batch.")
    batch_max_linger_ms: int = Field(
        20, ge=0, le=60_000, description="Max wait for a batch's first request, milliseconds; "
                                         "the batch then takes what is already fetched, so "
                                         "its size follows the backlog.",
    )
    processes: int = Field(1, ge=1, le=256, description="Worker processes on this host.")
    stop_grace_s: float = Field(
        45.0, gt=0, le=3600,
        description="After SIGTERM, how long a worker may take to finish its batch, commit "
                    "and leave the group before it exits anyway (exit 1; the next owner "
                    "redoes what was not committed), seconds. An orchestrator's grace period "
                    "(Kubernetes terminationGracePeriodSeconds) must be longer.")
    worker_id: str | None = Field(
        None, description="Worker instance id, stable across restarts (a StatefulSet pod name, "
                          "a systemd instance name): exactly-once's transactional id and the "
                          "static group membership derive from it, so a restarted worker takes "
                          "over at once. Unset: host-pid, new on every start.")
    static_membership: bool = Field(
        True, description="With --worker-id set: join the group as a static member "
                          "(group.instance.id), so a restart within the session timeout "
                          "keeps the partitions without a rebalance.")
    transaction_timeout_ms: int = Field(
        10_000, ge=1000,
        description="Exactly-once: producer transaction timeout, milliseconds. A worker "
                    "frozen inside a transaction holds back what read_committed readers see "
                    "(the last stable offset) until the coordinator aborts it, this long "
                    "after it began plus the brokers' abort sweep "
                    "(transaction.abort.timed.out.transaction.cleanup.interval.ms); 10 s as "
                    "in Kafka Streams (30 s kept readers waiting 39 s in the zombie drill).")
    session_timeout_ms: int = Field(
        10_000, ge=1000, description="Consumer group session timeout, milliseconds."
    )
    max_poll_interval_ms: int = Field(
        120_000, ge=5000, description="Consumer max.poll.interval.ms: the longest a worker may "
                                      "block between polls (waiting for deliveries or a "
                                      "transaction) before the group takes its partitions.")
    fetch_min_bytes: int = Field(
        65_536, ge=1, le=1_048_576,
        description="Consumer fetch.min.bytes: the broker holds a fetch until this much is "
                    "ready or --batch-max-linger-ms passes, so batches gather for up to that "
                    "linger instead of following each producer request (measured at 500 "
                    "requests/s: half the worker's CPU of fetch.min.bytes 1, p50 5 ms "
                    "higher; docs/benchmarks.md). 1: answer a fetch as soon as anything is "
                    "there (lowest latency at low rates).")
    commit_interval_ms: int = Field(
        100, ge=0, le=60_000,
        description="At-least-once: commit delivered offsets at most this often; exactly-once: "
                    "a transaction spans the batches of this interval (results become "
                    "visible to read_committed readers when it commits), milliseconds.")
    producer_linger_ms: int = Field(
        5, ge=0, le=1000, description="Producer linger for predictions, milliseconds.")
    producer_compression: Literal["none", "lz4", "zstd", "snappy", "gzip"] = Field(
        "lz4", description="Compression of predictions and dead letters.")
    delivery_timeout_ms: int = Field(
        30_000, ge=1000, description="How long the producer retries a prediction, milliseconds "
                                     "(exactly-once: at most --transaction-timeout-ms).")


class ScalingSection(BaseModel):
    """``streaminfer worker --autoscale MIN..MAX``: worker processes from consumer lag, by
    the rule KEDA's Kafka scaler and the HPA apply (see :mod:`stream.worker.autoscale`)."""

    autoscale: str | None = Field(
        None, pattern=r"^\d+\.\.\d+$",
        description="Grow and shrink worker processes between MIN..MAX (e.g. 1..4) from the "
                    "group's lag: desired = ceil(lag / --autoscale-lag-threshold), capped by "
                    "the partitions. Unset: --processes, fixed.")
    autoscale_lag_threshold: int = Field(
        2000, ge=1, description="Target lag per worker process, records (KEDA lagThreshold): "
                                "per-process throughput x the latency budget for a backlog.")
    autoscale_activation_lag: int = Field(
        0, ge=0, description="KEDA's activationLagThreshold, records: it only decides "
                             "scaling from and to zero, so with --autoscale MIN >= 1 it never "
                             "applies (kept for parity with the manifests).")
    autoscale_interval_s: float = Field(
        5.0, gt=0, le=300, description="How often the lag is read, seconds (KEDA pollingInterval).")
    autoscale_up_window_s: float = Field(
        0.0, ge=0, le=3600,
        description="Scale-up stabilisation: grow to the lowest desired count of this window, "
                    "seconds (HPA scaleUp.stabilizationWindowSeconds; 0 reacts at once).")
    autoscale_down_window_s: float = Field(
        60.0, ge=0, le=3600,
        description="Scale-down stabilisation: shrink only to the highest desired count of "
                    "this window, seconds (HPA scaleDown.stabilizationWindowSeconds), so a "
                    "dip between bursts does not shed processes that are needed again.")
    autoscale_metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="Serve the autoscaler's /metrics (lag, desired and running processes, "
                    "decisions) on this port; unset: no server.")


class LimitsSection(BaseModel):
    """What one request may hold; over a limit it is dead-lettered with stage ``limits``
    before any work is spent on it (processors/limits.py)."""

    max_message_bytes: int = Field(
        65_536, ge=64, le=100 * 1024 * 1024,
        description="Largest request message, bytes (checked before decoding).")
    max_headers: int = Field(32, ge=0, le=10_000,
                             description="Most headers a request message may carry.")
    max_features: int = Field(1_024, ge=1, le=1_000_000,
                              description="Most features one request may carry.")
    max_string_bytes: int = Field(
        1_024, ge=16, le=1_048_576,
        description="Longest request id, entity id, model name, trace id or feature name, "
                    "bytes (UTF-8).")


class ServingSection(BaseModel):
    """The model a worker serves and how it degrades: runtime threads, breakers, load
    shedding, last-known-good, fault drills."""

    model_path: Path = Field(
        default_factory=_default_model_path, description="Model directory (model.onnx + model.json)."
    )
    onnx_intra_op_threads: int = Field(1, ge=0, le=256, description="ONNX Runtime intra-op threads.")
    onnx_inter_op_threads: int = Field(1, ge=0, le=256, description="ONNX Runtime inter-op threads.")
    onnx_allow_spinning: bool = Field(False, description="Let ONNX Runtime threads spin-wait.")
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failures that open a circuit breaker (model, Redis)."
    )
    breaker_open_s: float = Field(
        5.0, gt=0, description="Seconds a breaker stays open before a half-open trial."
    )
    shed_max_lag: int | None = Field(
        None, ge=0, description="Shed load past this partition lag (unset: never shed)."
    )
    shed_min_priority: int = Field(
        1, description="When shedding, requests with priority below this get fallbacks."
    )
    lkg_refresh_s: float = Field(
        10.0, ge=0, description="Write an entity's last-known-good score at most this often, "
                                "seconds (0: on every prediction).")
    chaos_file: Path | None = Field(
        None, description="Fault-injection drill: while this file exists and says 'fail' "
                          "or 'slow <ms>', inference fails or slows.",
    )


class FeaturesSection(BaseModel):
    """The online feature store: Redis and the worker's feature cache."""

    feature_cache_size: int = Field(
        100_000, ge=0, description="Feature rows kept in the in-process cache (0: no cache)."
    )
    feature_cache_ttl_s: float = Field(
        1.0, ge=0, description="Seconds a cached feature row is served without asking Redis."
    )
    feature_precedence: Literal["request", "store"] = Field(
        "request", description="Which wins when a request and the store both have a feature."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL: feature store, last-known-good scores, answered ids (dev up "
                    "starts one).",
    )
    redis_mode: Literal["standalone", "sentinel", "cluster"] = Field(
        "standalone", description="Redis deployment: standalone, sentinel or cluster."
    )
    redis_sentinels: str | None = Field(
        None, description="Sentinel mode: sentinel addresses, host:port[,host:port]."
    )
    redis_master_name: str = Field(
        "streaminfer", description="Sentinel mode: the monitored master's name."
    )
    feature_app_stall_s: float = Field(
        45.0, ge=0,
        description="features run: restart the app when it is ready, events wait and no "
                    "offset was committed for this long (0: never; docs/features.md).",
    )


class LifecycleSection(BaseModel):
    """Model versions: the registry, the control topic, the canary judge."""

    registry_model: str | None = Field(
        None, description="Serve this model from the registry and follow <ns>.models for "
                          "version changes (unset: serve --model-path as it is).",
    )
    registry_dir: Path | None = Field(
        None, description="Model registry directory (default $STREAMINFER_HOME/registry)."
    )
    model_trusted_keys: str | None = Field(
        None, description="Ed25519 public key files (PEM, comma-separated) whose signatures "
                          "on model versions are trusted; with them set, a version that is "
                          "unsigned, signed by another key, or whose signature does not "
                          "verify or names another version, is refused.")
    model_require_signature: bool = Field(
        False, description="Fail at start-up unless --model-trusted-keys is set (signatures "
                           "are always required once keys are trusted).")
    canary_window_s: float = Field(
        60.0, gt=0, description="Canary judging window: figures of the last this many seconds.")
    canary_min_samples: int = Field(
        300, ge=1, description="Requests each of canary and active needs in the window before "
                               "the canary is judged.")
    canary_max_error_rate: float = Field(
        0.02, ge=0, le=1, description="Roll back when the canary's error rate (model errors, "
                                      "timeouts, guardrail violations) exceeds the active's by this.")
    canary_max_fallback_rate: float = Field(
        0.05, ge=0, le=1, description="Roll back when the canary's fallback rate exceeds the "
                                      "active's by this.")
    canary_max_p99_ratio: float = Field(
        2.0, gt=0, description="Roll back when the canary's p99 inference latency exceeds the "
                               "active's times this (and by at least 5 ms).")
    canary_max_psi: float = Field(
        0.25, gt=0, description="Roll back when the population stability index of canary vs "
                                "active scores exceeds this (0.25 = a major shift).")
    canary_promote_after_s: float | None = Field(
        None, gt=0, description="Promote a canary that stayed healthy (and judged) this long "
                                "(unset: promotion stays manual).")
    canary_judge: bool = Field(
        True, description="Let this worker roll back (and promote) canaries on its figures.")


class RegionsSection(BaseModel):
    """Several regions joined by MirrorMaker 2, and duplicate suppression."""

    regions: str | None = Field(
        None, description="Regions in preference order, name=bootstrap[;name=bootstrap]: "
                          "clients use the first reachable one (unset: --bootstrap-servers).")
    region_down_after_s: float = Field(
        10.0, gt=0, description="A region is declared down after this long without a "
                                "successful delivery or metadata answer, seconds.")
    region_failback_after_s: float = Field(
        30.0, gt=0, description="Return to the preferred region after it answered for this "
                                "long, seconds.")
    region_redis: str | None = Field(
        None, description="Each region's Redis, name=url[;name=url], for workers that follow "
                          "--regions (unset: --redis-url everywhere).")
    region_lookback_s: float = Field(
        600.0, gt=0, description="On entering a region a worker marks as answered every request "
                                 "id in that region's predictions (its own and mirrored) of "
                                 "this many seconds back, seconds.")
    dedupe_ttl_s: float | None = Field(
        None, gt=0, description="Suppress predictions for request ids answered within this "
                                "many seconds (recorded in Redis; unset: off).")


class ObservabilitySection(BaseModel):
    """Health endpoints, metrics, probes and logs."""

    health_port: int | None = Field(
        None, ge=0, le=65535,
        description="Serve /healthz /readyz /metrics on this port (process i of --processes "
                    "uses port+i; 0 picks a free port; unset: no HTTP server).",
    )
    health_host: str = Field("127.0.0.1", description="Address the health/metrics server binds.")
    health_token: SecretStr | None = Field(
        None, description="Bearer token the HTTP endpoints require for /metrics and for the "
                          "details of /healthz and /readyz (their status code stays open for "
                          "orchestrator probes), from the environment only (never logged; "
                          "--health-token-file wins).")
    health_token_file: Path | None = Field(
        None, description="File holding the bearer token (first line; keep it 0600).")
    health_tls_cert: Path | None = Field(
        None, description="Serve the HTTP endpoints over TLS with this certificate (PEM).")
    health_tls_key: Path | None = Field(
        None, description="Private key (PEM) of --health-tls-cert.")
    health_tls_client_ca: Path | None = Field(
        None, description="With TLS: require client certificates signed by this CA (mutual "
                          "TLS; a scraper without one is refused during the handshake).")
    watchdog_s: float = Field(
        30.0, gt=0, description="/healthz fails when the worker loop is stuck this long, seconds."
    )
    probe_interval_s: float = Field(
        30.0, gt=0, description="Seconds between golden-input model probes."
    )
    stats_interval_ms: int = Field(
        5000, ge=0, description="librdkafka statistics interval for lag/latency metrics (0: off)."
    )
    metrics_created_series: bool = Field(
        True, description="Expose the *_created series of counters and histograms (off: "
                          "fewer series for Prometheus to store; rates do not need them).")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log format: json, text, or auto (text on a terminal, else json)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


class DevClusterSection(BaseModel):
    """Images of the local and test clusters."""

    kafka_image: str = Field(
        "streaminfer/kafka:4.4.0",
        description="Kafka image for dev/test clusters (apache/kafka:<v> works too).",
    )
    redis_image: str = Field(
        "streaminfer/redis:7", description="Redis image for dev/test clusters (redis:7 works too)."
    )
