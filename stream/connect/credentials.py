"""Credentials and TLS material from settings, for Kafka (librdkafka properties) and Redis
(redis-py keyword arguments). Secrets are read from their file when a client is built
(``--sasl-password-file``, ``--redis-password-file``), so a rotated file is used by the
next connection; errors name the setting and the file, never a secret."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from stream.exceptions import ConfigurationError
from stream.settings import Settings, env_of, flag_of


def read_secret(value: SecretStr | None, path: Path | None, field: str) -> str | None:
    """The secret from ``path`` (its first line) when set, else ``value``'s."""
    if path is not None:
        try:
            text = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigurationError(
                f"{flag_of(field)} ({env_of(field)}): cannot read {path}: {exc.strerror}; "
                "point it at a readable file holding the secret") from exc
        if not text or not text[0].strip():
            raise ConfigurationError(f"{flag_of(field)} ({env_of(field)}): {path} is empty")
        return text[0].strip()
    return value.get_secret_value() if value is not None else None


def _existing(path: Path | None, field: str) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigurationError(f"{flag_of(field)} ({env_of(field)}): {path} is not a file")
    return str(path)


def _tls_files(settings: Settings, ca: str, cert: str, key: str
               ) -> tuple[str | None, str | None, str | None]:
    """The CA, client certificate and key files the fields ``ca``, ``cert`` and ``key``
    name, each checked to exist (the key only with a certificate)."""
    ca_path = _existing(getattr(settings, ca), ca)
    cert_path = _existing(getattr(settings, cert), cert)
    key_path = _existing(getattr(settings, key), key) if cert_path else None
    return ca_path, cert_path, key_path


def kafka_security(settings: Settings) -> dict[str, Any]:
    """librdkafka's security properties for these settings."""
    conf: dict[str, Any] = {"security.protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        password = read_secret(settings.sasl_password, settings.sasl_password_file,
                               "sasl_password_file")
        if password is None:  # Settings checks it; never send a None password
            raise ConfigurationError("security_protocol SASL_* needs STREAMINFER_SASL_PASSWORD or "
                                     "--sasl-password-file")
        conf.update({"sasl.mechanism": settings.sasl_mechanism,
                     "sasl.username": settings.sasl_username,
                     "sasl.password": password})
    if settings.security_protocol.endswith("SSL"):
        ca, cert, key = _tls_files(settings, "ssl_ca_location", "ssl_certificate_location",
                                   "ssl_key_location")
        if ca:
            conf["ssl.ca.location"] = ca
        if cert:
            conf["ssl.certificate.location"] = cert
            conf["ssl.key.location"] = key
            if settings.ssl_key_password is not None:
                conf["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
        conf["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.ssl_endpoint_identification else "none")
    return conf


def redis_tls(settings: Settings) -> bool:
    """Whether Redis connections use TLS (a rediss:// URL or a CA file)."""
    return settings.redis_url.startswith("rediss://") or settings.redis_ca_file is not None


def redis_security(settings: Settings) -> dict[str, Any]:
    """redis-py keyword arguments for the user, password and TLS of these settings."""
    kwargs: dict[str, Any] = {}
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    password = read_secret(settings.redis_password, settings.redis_password_file,
                           "redis_password_file")
    if password is not None:
        kwargs["password"] = password
    if redis_tls(settings):
        kwargs["ssl"] = True
        kwargs["ssl_cert_reqs"] = "required"
        ca, cert, key = _tls_files(settings, "redis_ca_file", "redis_cert_file",
                                   "redis_key_file")
        if ca:
            kwargs["ssl_ca_certs"] = ca
        if cert:
            kwargs["ssl_certfile"] = cert
            kwargs["ssl_keyfile"] = key
    return kwargs


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context for Python Kafka clients (the faust feature app): the CA
    file (or the system's), the client certificate when set, hostname checks as set."""
    ca, cert, key = _tls_files(settings, "ssl_ca_location", "ssl_certificate_location",
                               "ssl_key_location")
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        key_password = (settings.ssl_key_password.get_secret_value()
                        if settings.ssl_key_password is not None else None)
        ctx.load_cert_chain(cert, key, key_password)
    if not settings.ssl_endpoint_identification:
        ctx.check_hostname = False
    return ctx


def faust_credentials(settings: Settings) -> Any:
    """faust's ``broker_credentials`` for these settings (None for PLAINTEXT)."""
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    password = read_secret(settings.sasl_password, settings.sasl_password_file,
                           "sasl_password_file")
    return faust.SASLCredentials(
        username=settings.sasl_username, password=password, mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None)
