"""What a command sends in clear: URLs with their passwords redacted for display, and a
warning when credentials or data would cross a network without TLS.

Loopback addresses (127.0.0.0/8, ::1, ``localhost``) are exempt: traffic there never
leaves the host. Anything else (another host, a container name on a Docker network) is
warned about once per command, naming the address and the setting that turns TLS on.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit, urlunsplit

from stream.settings import Settings

log = logging.getLogger(__name__)
TLS_PROTOCOLS = ("SSL", "SASL_SSL")


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_loopback(host: str) -> bool:
    """Does traffic to ``host`` stay on this machine?"""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(address: str) -> str:
    """The host of ``host:port`` (IPv6 ``[::1]:9092`` too)."""
    if address.startswith("["):
        return address[1:address.find("]")]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def cleartext_warnings(settings: Settings, kafka: bool = True, redis: bool = True
                       ) -> list[str]:
    """One line per service this command would reach without TLS across a network."""
    out = []
    if kafka and settings.security_protocol not in TLS_PROTOCOLS:
        remote = [a for a in settings.bootstrap_servers.split(",")
                  if a.strip() and not is_loopback(_host_of(a.strip()))]
        if remote:
            what = ("SASL credentials and data" if settings.security_protocol.startswith("SASL")
                    else "data")
            out.append(f"Kafka at {', '.join(remote)} is reached without TLS "
                       f"(--security-protocol {settings.security_protocol}): {what} cross the "
                       "network in clear; use SSL or SASL_SSL")
    if redis:
        parts = urlsplit(settings.redis_url)
        if parts.scheme == "redis" and parts.hostname and not is_loopback(parts.hostname):
            what = "its password and data" if parts.password else "data"
            out.append(f"Redis at {redact_url(settings.redis_url)} is reached without TLS: "
                       f"{what} cross the network in clear; use a rediss:// URL")
    return out


def warn_cleartext(settings: Settings, kafka: bool = True, redis: bool = True) -> None:
    """Log :func:`cleartext_warnings` (a command calls it once, when it resolves settings)."""
    for line in cleartext_warnings(settings, kafka, redis):
        log.warning(line)
