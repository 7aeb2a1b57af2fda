"""Typed settings. Every field has a ``STREAMINFER_<FIELD>`` environment twin and,
where a command uses it, a ``--field-name`` flag (see :mod:`stream.cli.options`).

Precedence: command-line flag > environment > the dev cluster's env file (written by
``streaminfer dev up``) > default. Invalid values stop start-up with a message that
names the setting, its flag and its variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.exceptions import ConfigurationError

ENV_PREFIX = "STREAMINFER_"


def state_dir() -> Path:
    """Where ``dev up`` records the running cluster (``STREAMINFER_HOME``, default ~/.streaminfer)."""
    return Path(os.environ.get("STREAMINFER_HOME", Path.home() / ".streaminfer"))


def dev_env_file() -> Path:
    """The env file ``dev up`` writes and every other command reads."""
    return state_dir() / "dev.env"


Guarantee = Literal["at-least-once", "exactly-once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


def _default_model_path() -> Path:
    from processors.model import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


class Settings(BaseSettings):
    """All streaminfer settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, frozen=True
    )

    # --- Kafka connection -------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]."
    )
    security_protocol: SecurityProtocol = Field("PLAINTEXT", description="Kafka security protocol.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when the protocol is SASL_*."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    namespace: str = Field(
        "streaminfer", pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Topic prefix: <namespace>.requests, .predictions, .dlq.",
    )

    # --- Topics -----------------------------------------------------------------
    partitions: int = Field(4, ge=1, le=10_000, description="Partitions per topic on create.")
    replication_factor: int = Field(
        3, ge=1, le=32, description="Replication factor on create (the dev cluster uses 1)."
    )
    min_insync_replicas: int = Field(
        2, ge=1, le=32, description="min.insync.replicas on create (<= replication factor)."
    )

    # --- Worker -----------------------------------------------------------------
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
    model_path: Path = Field(
        default_factory=_default_model_path, description="Model directory (model.onnx + model.json)."
    )
    onnx_intra_op_threads: int = Field(1, ge=0, le=256, description="ONNX Runtime intra-op threads.")
    onnx_inter_op_threads: int = Field(1, ge=0, le=256, description="ONNX Runtime inter-op threads.")
    onnx_allow_spinning: bool = Field(False, description="Let ONNX Runtime threads spin-wait.")
    processes: int = Field(1, ge=1, le=256, description="Worker processes on this host.")
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
        30_000, ge=1000, description="Exactly-once: producer transaction timeout, milliseconds."
    )
    session_timeout_ms: int = Field(
        10_000, ge=1000, description="Consumer group session timeout, milliseconds."
    )
    max_poll_interval_ms: int = Field(
        120_000, ge=5000, description="Consumer max.poll.interval.ms: the longest a worker may "
                                      "block between polls (waiting for deliveries or a "
                                      "transaction) before the group takes its partitions.")
    fetch_min_bytes: int = Field(
        1, ge=1, le=1_048_576,
        description="Consumer fetch.min.bytes: the broker holds a fetch until this much is "
                    "ready or --batch-max-linger-ms passes (fewer, larger fetches under load).")
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

    # --- Degradation --------------------------------------------------------------
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

    # --- Features -----------------------------------------------------------------
    feature_cache_size: int = Field(
        100_000, ge=0, description="Feature rows kept in the in-process cache (0: no cache)."
    )
    feature_cache_ttl_s: float = Field(
        1.0, ge=0, description="Seconds a cached feature row is served without asking Redis."
    )
    feature_precedence: Literal["request", "store"] = Field(
        "request", description="Which wins when a request and the store both have a feature."
    )

    # --- Observability ----------------------------------------------------------
    health_port: int | None = Field(
        None, ge=0, le=65535,
        description="Serve /healthz /readyz /metrics on this port (process i of --processes "
                    "uses port+i; 0 picks a free port; unset: no HTTP server).",
    )
    health_host: str = Field("127.0.0.1", description="Address the health/metrics server binds.")
    watchdog_s: float = Field(
        30.0, gt=0, description="/healthz fails when the worker loop is stuck this long, seconds."
    )
    probe_interval_s: float = Field(
        30.0, gt=0, description="Seconds between golden-input model probes."
    )
    stats_interval_ms: int = Field(
        5000, ge=0, description="librdkafka statistics interval for lag/latency metrics (0: off)."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log format: json, text, or auto (text on a terminal, else json)."
    )

    # --- Redis ------------------------------------------------------------------
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

    registry_model: str | None = Field(
        None, description="Serve this model from the registry and follow <ns>.models for "
                          "version changes (unset: serve --model-path as it is).",
    )
    registry_dir: Path | None = Field(
        None, description="Model registry directory (default $STREAMINFER_HOME/registry)."
    )

    # --- Canary judge -----------------------------------------------------------
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

    # --- Regions ----------------------------------------------------------------
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

    # --- Dev cluster ------------------------------------------------------------
    kafka_image: str = Field(
        "streaminfer/kafka:4.4.0",
        description="Kafka image for dev/test clusters (apache/kafka:<v> works too).",
    )
    redis_image: str = Field(
        "streaminfer/redis:7", description="Redis image for dev/test clusters (redis:7 works too)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @model_validator(mode="after")
    def _check_timeouts(self) -> Settings:
        """The timeouts must nest, or a slow broker turns into a lost group membership in
        the middle of a batch or a rebalance (see :func:`timeout_chain`)."""
        problems = timeout_chain(self)
        if problems:
            raise ValueError("timeouts contradict each other:\n    " + "\n    ".join(problems))
        return self

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) must be <= "
                f"replication_factor ({self.replication_factor})"
            )
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password"
            )
        return self

    # --- derived names ----------------------------------------------------------
    @property
    def requests_topic(self) -> str:
        """Topic the workers consume."""
        return f"{self.namespace}.requests"

    @property
    def predictions_topic(self) -> str:
        """Topic predictions go to."""
        return f"{self.namespace}.predictions"

    @property
    def events_topic(self) -> str:
        """Raw domain events the feature pipeline aggregates."""
        return f"{self.namespace}.events"

    @property
    def dlq_topic(self) -> str:
        """Dead-letter topic."""
        return f"{self.namespace}.dlq"

    @property
    def shadow_topic(self) -> str:
        """Where shadow versions' scores go."""
        return f"{self.namespace}.shadow"

    @property
    def group(self) -> str:
        """The consumer group the workers share."""
        return self.group_id or f"{self.namespace}.inference"

    @property
    def registry_path(self) -> Path:
        """Where published model versions live."""
        return self.registry_dir or state_dir() / "registry"

    @property
    def batch_max_linger_s(self) -> float:
        """The linger in seconds."""
        return self.batch_max_linger_ms / 1000.0


SETTLE_MARGIN_MS = 5_000  # on top of the delivery timeout while settling a batch


def blocking_budget_ms(settings: Settings) -> int:
    """The longest the worker loop (or its revoke callback) blocks without polling:
    at-least-once waits for a batch's delivery reports (delivery timeout + margin);
    exactly-once commits a transaction and, if that fails, aborts it (two transaction
    timeouts)."""
    if settings.guarantee == "exactly-once":
        return 2 * settings.transaction_timeout_ms
    return settings.delivery_timeout_ms + SETTLE_MARGIN_MS


def timeout_chain(s: Settings) -> list[str]:
    """What is wrong with the timeouts, each naming the settings and values that work.

    The chain (all milliseconds)::

        commit_interval < session_timeout <= max_poll_interval
        blocking budget + 5000 <= max_poll_interval, where the budget is
            at-least-once: delivery_timeout + 5000
            exactly-once:  2 * transaction_timeout (commit, then abort or fence)
        exactly-once: commit_interval < transaction_timeout
            (and the producer's delivery timeout is capped at the transaction timeout)
    """
    out: list[str] = []
    if s.session_timeout_ms > s.max_poll_interval_ms:
        out.append(f"session_timeout_ms ({s.session_timeout_ms}) must be <= "
                   f"max_poll_interval_ms ({s.max_poll_interval_ms}): raise "
                   f"{flag_of('max_poll_interval_ms')} to at least {s.session_timeout_ms}")
    if s.commit_interval_ms >= s.session_timeout_ms:
        out.append(f"commit_interval_ms ({s.commit_interval_ms}) must be < session_timeout_ms "
                   f"({s.session_timeout_ms}): lower {flag_of('commit_interval_ms')} to at "
                   f"most {s.session_timeout_ms - 1}")
    budget = blocking_budget_ms(s)
    if budget + SETTLE_MARGIN_MS > s.max_poll_interval_ms:
        if s.guarantee == "exactly-once":
            fix = (f"lower {flag_of('transaction_timeout_ms')} to at most "
                   f"{(s.max_poll_interval_ms - SETTLE_MARGIN_MS) // 2}")
            what = f"2 x transaction_timeout_ms ({s.transaction_timeout_ms})"
        else:
            fix = (f"lower {flag_of('delivery_timeout_ms')} to at most "
                   f"{s.max_poll_interval_ms - 2 * SETTLE_MARGIN_MS}")
            what = f"delivery_timeout_ms ({s.delivery_timeout_ms}) + {SETTLE_MARGIN_MS}"
        out.append(f"{what} + {SETTLE_MARGIN_MS} must be <= max_poll_interval_ms "
                   f"({s.max_poll_interval_ms}), or a batch waiting on a slow broker loses the "
                   f"group's partitions mid-wait: {fix}, or raise "
                   f"{flag_of('max_poll_interval_ms')} to at least {budget + SETTLE_MARGIN_MS}")
    if s.guarantee == "exactly-once" and s.commit_interval_ms >= s.transaction_timeout_ms:
        out.append(f"commit_interval_ms ({s.commit_interval_ms}) must be < "
                   f"transaction_timeout_ms ({s.transaction_timeout_ms}): a transaction must "
                   f"commit before the broker aborts it; lower {flag_of('commit_interval_ms')}")
    return out


def flag_of(field: str) -> str:
    """The command-line flag of a setting."""
    return "--" + field.replace("_", "-")


def env_of(field: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + field.upper()


def to_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes a ``streaminfer`` subprocess use these settings (the
    current environment without its STREAMINFER_* variables, except STREAMINFER_HOME).

    Secrets are included in clear: an environment is handed to the child in memory and
    is readable only by the same user (``/proc/<pid>/environ``); never print or store
    the returned mapping."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(ENV_PREFIX) or k == "STREAMINFER_HOME"}
    values = settings.model_dump()
    values.update(overrides)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[env_of(name)] = str(value)
    return env


def load_settings(**overrides: Any) -> Settings:
    """Build settings from flags (``overrides``; None means unset), env and the dev env file.

    Raises :class:`ConfigurationError` naming each bad setting with its flag and variable.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    env_file = dev_env_file()
    try:
        return Settings(_env_file=env_file if env_file.exists() else None, **given)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if loc:
                lines.append(
                    f"  {loc} ({flag_of(loc)} / {env_of(loc)}): {err['msg']}"
                    f" (got {err.get('input')!r})"
                )
            else:
                lines.append(f"  {err['msg']}")
        raise ConfigurationError(
            "invalid settings:\n" + "\n".join(lines)
            + "\nfix the flag or environment variable named above "
            f"(the dev cluster's values come from {env_file})"
        ) from exc
