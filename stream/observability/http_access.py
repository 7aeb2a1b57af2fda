"""Settings to :class:`~stream.observability.health.HttpAccess`: the bearer token (from
the environment or a file) and the TLS context of the HTTP endpoints."""

from __future__ import annotations

import ssl

from stream.connect.credentials import read_secret
from stream.observability.health import HttpAccess
from stream.settings import Settings


def http_access(settings: Settings) -> HttpAccess:
    """Who may read this process's HTTP endpoints, as the settings say."""
    token = read_secret(settings.health_token, settings.health_token_file, "health_token_file")
    tls = None
    if settings.health_tls_cert is not None and settings.health_tls_key is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(settings.health_tls_cert, settings.health_tls_key)
        if settings.health_tls_client_ca is not None:
            # Optional at the handshake (a kubelet probe presents no certificate), required
            # by the handler for /metrics and the details; a certificate the CA did not sign
            # fails the handshake.
            tls.load_verify_locations(cafile=str(settings.health_tls_client_ca))
            tls.verify_mode = ssl.CERT_OPTIONAL
    return HttpAccess(token, tls, client_cert=settings.health_tls_client_ca is not None)
