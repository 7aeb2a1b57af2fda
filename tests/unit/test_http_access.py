"""The HTTP endpoints protected: a bearer token, TLS, mutual TLS (a real server on
127.0.0.1 with certificates from the dev CA code)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream.devcluster import pki
from stream.observability.health import HealthServer, HealthState
from stream.observability.http_access import http_access
from stream.observability.metrics import WorkerMetrics
from stream.settings import Settings

TOKEN = "t0ken-for-the-scraper"


def fetch(url: str, token: str | None = None,
          context: ssl.SSLContext | None = None) -> tuple[int, dict[str, Any] | str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            body = resp.read().decode()
            code = resp.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read().decode(), exc.code
    try:
        return code, json.loads(body)
    except ValueError:
        return code, body


def serve(settings: Settings) -> Iterator[tuple[HealthState, str]]:
    registry = CollectorRegistry()
    WorkerMetrics.create(registry)
    state = HealthState()
    state.update(group_joined=True, assigned=1, model_loaded=True, model="fraud v1")
    server = HealthServer(state, registry, port=0, access=http_access(settings)).start()
    try:
        yield state, server.url
    finally:
        server.stop()


@pytest.fixture
def with_token() -> Iterator[tuple[HealthState, str]]:
    yield from serve(Settings(health_token=TOKEN))


def test_a_token_guards_metrics_and_the_details_but_not_the_probes_verdict(
        with_token: tuple[HealthState, str]) -> None:
    state, url = with_token
    code, body = fetch(url + "/metrics")
    assert code == 401
    assert "Bearer" in str(body)
    assert fetch(url + "/metrics", token="wrong")[0] == 401
    code, text = fetch(url + "/metrics", token=TOKEN)
    assert code == 200
    assert "streaminfer_requests_consumed_total" in str(text)
    assert fetch(url + "/readyz") == (200, {"status": "ready"})  # no checks, no model name
    code, detail = fetch(url + "/readyz", token=TOKEN)
    assert code == 200
    assert isinstance(detail, dict)
    assert "checks" in detail
    state.update(kafka_reachable=False, kafka_detail="refused: wrong password")
    assert fetch(url + "/readyz") == (503, {"status": "unready"})
    assert "wrong password" in str(fetch(url + "/readyz", token=TOKEN)[1])


def test_a_token_file_is_read_and_an_unreadable_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert http_access(Settings(health_token_file=path)).token == TOKEN
    from stream.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="health-token-file"):
        http_access(Settings(health_token_file=tmp_path / "missing"))


def test_https_and_mutual_tls(tmp_path: Path) -> None:
    ca = pki.make_ca()
    server = pki.issue(ca, "worker", ["localhost"], ["127.0.0.1"])
    scraper = pki.issue(ca, "prometheus", ["prometheus"])
    stranger_ca = pki.make_ca("another CA")
    stranger = pki.issue(stranger_ca, "stranger", ["stranger"])
    files = {"ca.pem": ca.cert_pem, "server.crt": server.cert_pem,
             "server.key": server.key_pem, "scraper.pem": scraper.key_pem + scraper.cert_pem,
             "stranger.pem": stranger.key_pem + stranger.cert_pem}
    for name, data in files.items():
        pki.write_private(tmp_path / name, data)
    settings = Settings(health_tls_cert=tmp_path / "server.crt",
                        health_tls_key=tmp_path / "server.key",
                        health_tls_client_ca=tmp_path / "ca.pem")

    def client(cert: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        if cert:
            ctx.load_cert_chain(str(tmp_path / cert))
        return ctx

    for _state, url in serve(settings):
        assert url.startswith("https://")
        # A probe without a certificate gets the verdict, not the metrics.
        assert fetch(url + "/healthz", context=client(None)) == (200, {"status": "ok"})
        assert fetch(url + "/metrics", context=client(None))[0] == 401
        code, text = fetch(url + "/metrics", context=client("scraper.pem"))
        assert code == 200
        assert "streaminfer_" in str(text)
        # A certificate another CA signed fails the handshake (TLS 1.3: the client learns
        # it at its first read).
        with pytest.raises((urllib.error.URLError, ssl.SSLError)):
            fetch(url + "/metrics", context=client("stranger.pem"))
        # Plain HTTP to the TLS port gets nothing useful.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(url.replace("https", "http") + "/healthz", timeout=3)


def test_half_a_tls_configuration_is_refused_with_the_missing_setting() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="health_tls_key"):
        Settings(health_tls_cert=Path("x.crt"))
    with pytest.raises(ValidationError, match="health_tls_cert"):
        Settings(health_tls_client_ca=Path("ca.pem"))
