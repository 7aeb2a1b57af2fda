"""Why Kafka refused a client, in words: authentication, TLS and protocol mismatches.

librdkafka retries these forever and reports them only through its error callback
(``_AUTHENTICATION``, ``_SSL``) or its log (a listener that closes the connection during
the first request: usually a plaintext client at a TLS or SASL listener). :class:`Refusals`
collects both; :func:`explain` turns what it saw into one sentence naming the cause and the
setting that fixes it, so a command stops at once instead of waiting out its timeout.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Any

from confluent_kafka import KafkaError

from stream.settings import Settings

LISTENER_CLOSED = "in state APIVERSION_QUERY"
CLOSED_AFTER_TLS = "SSL connection closed by peer"
# A listener requiring client certificates (TLS 1.3 alert 116), and librdkafka's note that
# the configured certificate is not from a CA the broker accepts (so it sent none).
CERT_REQUIRED = "alert certificate required"
CERT_NOT_SENT = "not sending any client certificates"
TELLING = (LISTENER_CLOSED, CLOSED_AFTER_TLS, CERT_REQUIRED, CERT_NOT_SENT)


class Refusals:
    """An ``error_cb`` and a ``logger`` for a client's configuration that remember the
    telling errors (and pass log records on to ``forward``)."""

    def __init__(self, forward: logging.Logger | None = None) -> None:
        self.errors: list[KafkaError] = []
        self.lines: list[str] = []
        self.forward = forward
        self._lock = threading.Lock()

    def error_cb(self, err: KafkaError) -> None:
        """librdkafka's error callback."""
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            with self._lock:
                self.errors.append(err)

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """librdkafka's log callback (the logging.Logger method it calls)."""
        text = fmt % args if args else fmt
        if any(t in text for t in TELLING):
            with self._lock:
                self.lines.append(text)
        if self.forward is not None:
            self.forward.log(level, fmt, *args)

    def conf(self) -> dict[str, Any]:
        """What to add to a client's configuration (closed connections are logged: that
        line is how a listener expecting TLS shows)."""
        return {"error_cb": self.error_cb, "logger": self, "log.connection.close": True}

    def explain(self, settings: Settings) -> str | None:
        """The cause, if what was seen tells it."""
        with self._lock:
            errors, lines = list(self.errors), list(self.lines)
        return explain(settings, errors, lines)


def explain(settings: Settings, errors: list[KafkaError], lines: list[str]) -> str | None:
    """One sentence on why Kafka at ``settings.bootstrap_servers`` refused the client."""
    where = f"Kafka at {settings.bootstrap_servers}"
    for err in errors:
        text = err.str()
        if err.code() == KafkaError._AUTHENTICATION:
            if "mechanism" in text and "Unsupported" in text:
                return (f"{where} does not offer SASL mechanism {settings.sasl_mechanism} "
                        f"({text.split(': ', 1)[-1]}); set --sasl-mechanism to one it lists")
            return (f"{where} refused the credentials of user {settings.sasl_username!r} "
                    f"({settings.sasl_mechanism}): wrong user name or password. Check "
                    "--sasl-username and --sasl-password-file (STREAMINFER_SASL_*)")
        if err.code() == KafkaError._SSL:
            if "certificate verify failed" in text:
                return (f"{where}: the broker's certificate could not be verified against "
                        f"{settings.ssl_ca_location or 'the system trust store'}; set "
                        "--ssl-ca-location to the CA that signed it (dev up --secure: "
                        "$STREAMINFER_HOME/secure/ca.pem)")
            return f"{where}: TLS failed ({text}); check the --ssl-* settings"
    certificate = _client_certificate(settings, [*lines, *(e.str() for e in errors)])
    if certificate is not None:
        return certificate
    for line in lines:
        # A broker that is starting or stopping closes connections this way too: only a
        # listener that completes a TLS handshake is taken for one that expects TLS.
        if (LISTENER_CLOSED in line and settings.security_protocol in ("PLAINTEXT",
                                                                        "SASL_PLAINTEXT")
                and any(speaks_tls(hp) for hp in settings.bootstrap_servers.split(","))):
            return (f"{where} closed the connection before answering: its listener expects "
                    f"TLS, and this client speaks {settings.security_protocol}. Set "
                    "--security-protocol SASL_SSL (or SSL) with --ssl-ca-location")
        if CLOSED_AFTER_TLS in line and settings.security_protocol == "SSL":
            return (f"{where} closed the connection after TLS: its listener expects SASL "
                    "authentication. Set --security-protocol SASL_SSL with --sasl-mechanism, "
                    "--sasl-username and --sasl-password-file")
    return None


def _client_certificate(settings: Settings, texts: list[str]) -> str | None:
    """A listener that requires a client certificate refused this client's (or its lack)."""
    where = f"Kafka at {settings.bootstrap_servers}"
    if any(CERT_NOT_SENT in t for t in texts) and settings.ssl_certificate_location:
        return (f"{where} refused the client certificate {settings.ssl_certificate_location}: "
                "the broker does not trust the CA that signed it (so none was sent). Use a "
                "certificate from the cluster's CA (--ssl-certificate-location, "
                "--ssl-key-location; dev up --secure: `streaminfer dev env --as <principal> "
                "--client-cert`)")
    if any(CERT_REQUIRED in t for t in texts):
        return (f"{where}: its listener requires a client certificate, and this client sent "
                "none. Set --ssl-certificate-location and --ssl-key-location (dev up "
                "--secure: `streaminfer dev env --as <principal> --client-cert`), or use the "
                "SASL listener")
    return None


def speaks_tls(host_port: str, timeout_s: float = 2.0) -> bool:
    """Whether ``host:port`` completes a TLS handshake (its certificate is not checked:
    this only tells a TLS listener from a plaintext one)."""
    host, _, port = host_port.strip().rpartition(":")
    if not port.isdigit():
        return False
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host.strip("[]") or None):
            return True
    except (OSError, ssl.SSLError):
        return False
