"""``Settings``: every section in one frozen object, read from flags, the environment and
the dev cluster's env file (see :mod:`stream.settings.environment`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.settings.naming import ENV_PREFIX
from stream.settings.paths import state_dir
from stream.settings.retraining import RetrainSection
from stream.settings.sections import (
    DevClusterSection,
    EncryptionSection,
    FeaturesSection,
    KafkaSection,
    LifecycleSection,
    LimitsSection,
    ObservabilitySection,
    RegionsSection,
    ScalingSection,
    SecuritySection,
    ServingSection,
    WorkerSection,
)
from stream.settings.timeouts import timeout_chain

SECTIONS: dict[str, type[BaseModel]] = {
    "kafka": KafkaSection, "security": SecuritySection, "encryption": EncryptionSection,
    "worker": WorkerSection,
    "scaling": ScalingSection,
    "limits": LimitsSection,
    "serving": ServingSection, "features": FeaturesSection, "lifecycle": LifecycleSection,
    "regions": RegionsSection, "retraining": RetrainSection,
    "observability": ObservabilitySection, "devcluster": DevClusterSection,
}


class Settings(BaseSettings, KafkaSection, SecuritySection, EncryptionSection, WorkerSection,
               ScalingSection,
               LimitsSection, ServingSection,
               FeaturesSection, LifecycleSection, RegionsSection, RetrainSection,
               ObservabilitySection, DevClusterSection):
    """All streaminfer settings, section by section (see :data:`SECTIONS`)."""

    model_config = SettingsConfigDict(
        # An empty variable (STREAMINFER_SASL_PASSWORD_FILE=) means unset, not "." or "".
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, frozen=True,
        env_ignore_empty=True,
    )

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
        if self.autoscale is not None:
            from stream.worker.scaling import parse_range

            parse_range(self.autoscale)  # its ValueError names the flag and the shape
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username
            and (self.sasl_password or self.sasl_password_file)
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and "
                "sasl_password (or sasl_password_file)"
            )
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("a client certificate needs both ssl_certificate_location and "
                             "ssl_key_location")
        if (self.health_tls_cert is None) != (self.health_tls_key is None):
            raise ValueError("TLS on the HTTP endpoints needs both health_tls_cert and "
                             "health_tls_key")
        if self.health_tls_client_ca is not None and self.health_tls_cert is None:
            raise ValueError("health_tls_client_ca (mutual TLS) needs health_tls_cert and "
                             "health_tls_key")
        if (self.redis_cert_file is None) != (self.redis_key_file is None):
            raise ValueError("a Redis client certificate needs both redis_cert_file and "
                             "redis_key_file")
        return self

    # --- derived names ----------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        """The model's directory (--model-path may name the directory or its model.onnx)."""
        return self.model_path if self.model_path.is_dir() else self.model_path.parent

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
    def feedback_topic(self) -> str:
        """Ground-truth labels (Avro Label)."""
        return f"{self.namespace}.feedback"

    @property
    def inputs_topic(self) -> str:
        """The features each request was answered with (Avro InputSnapshot)."""
        return f"{self.namespace}.inputs"

    @property
    def retrain_path(self) -> Path:
        """Where retraining keeps its run directories."""
        return self.retrain_dir or state_dir() / "retrain"

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


def section_of(field: str) -> str:
    """The name of the section a setting belongs to."""
    return next(name for name, cls in SECTIONS.items() if field in cls.model_fields)
