"""The security sections of the settings: how Kafka and Redis connections authenticate
and encrypt (``security``), and field-level encryption of request features
(``encryption``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


class SecuritySection(BaseModel):
    """Authentication and encryption of the Kafka and Redis connections (docs/security.md).

    Secrets come from the environment or from files (``*_file``: read when a client is
    built, so a rotated file is picked up by the next connection); they are ``SecretStr``,
    never logged or echoed."""

    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="Kafka security protocol: PLAINTEXT, SSL (TLS, optionally "
                                 "with a client certificate), SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when the protocol is SASL_*."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password, from the environment only (a flag would show in "
                          "ps; never logged; --sasl-password-file wins when both are set).")
    sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (first line; keep it 0600).")
    ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA(s) that signed the brokers' certificates "
                          "(unset: the system's trust store).")
    ssl_certificate_location: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS with Kafka.")
    ssl_key_location: Path | None = Field(
        None, description="Private key (PEM) of the client certificate.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted --ssl-key-location, from the environment "
                          "only (never logged).")
    ssl_endpoint_identification: bool = Field(
        True, description="Check that a broker's certificate names the host connected to "
                          "(turn off only for certificates without the right names).")
    redis_username: str | None = Field(
        None, description="Redis ACL user (unset: the URL's user, else 'default').")
    redis_password: SecretStr | None = Field(
        None, description="Redis password, from the environment only (never logged; "
                          "--redis-password-file wins).")
    redis_password_file: Path | None = Field(
        None, description="File holding the Redis password (first line; keep it 0600).")
    redis_ca_file: Path | None = Field(
        None, description="PEM CA file that verifies Redis' certificate; setting it (or a "
                          "rediss:// URL) turns TLS on.")
    redis_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for Redis servers that require one.")
    redis_key_file: Path | None = Field(
        None, description="Private key (PEM) of --redis-cert-file.")
    replay_trusted_keys: str | None = Field(
        None, description="Workers: Ed25519 public keys (PEM files, comma-separated) of the "
                          "DLQ operators; a replayed request is answered however late only when "
                          "its replay marker is signed by one of them (unset: no marker is "
                          "honoured).")
    replay_signing_key: Path | None = Field(
        None, description="dlq replay: the DLQ operator's Ed25519 private key (PEM; "
                          "`streaminfer models keygen` makes a pair) that signs replay markers.")


class EncryptionSection(BaseModel):
    """Field-level encryption of sensitive request features (docs/security.md)."""

    field_keys_file: Path | None = Field(
        None, description="Field key ring, JSON {primary, keys} (mode 0600; `streaminfer "
                          "field-keys add` makes it). Producers seal the model's sensitive "
                          "features with the primary key; workers open them with any key in "
                          "it. Re-read when it changes, so rotation needs no restart.")
    field_keys: SecretStr | None = Field(
        None, description="The same key ring as JSON text, from the environment only (no "
                          "command takes it as a flag; never logged; --field-keys-file wins "
                          "when both are set).")
    seal_fields: str | None = Field(
        None, description="Features the producer seals, comma-separated (unset: the model's "
                          "sensitive_features in its features.json).")
    require_sealed: bool = Field(
        False, description="Workers dead-letter (stage decrypt) requests that carry one of the "
                           "model's sensitive features in clear.")
