"""Plain HTTP helpers for tests of the worker endpoints."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def get(url: str, token: str | None = None,
        context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """(status, body); 0 when nothing answers. ``token``: sent as a bearer token;
    ``context``: the TLS context of an https URL (its CA, a client certificate)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def metric_total(base_url: str, name: str, **labels: str) -> float:
    """Sum of a sample's values on ``base_url``/metrics, over series matching ``labels``."""
    _code, body = get(base_url + "/metrics")
    return sum(s.value for family in text_string_to_metric_families(body.decode())
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
