"""Per-worker HTTP endpoints: /healthz (alive), /readyz (able to serve), /metrics.

Liveness (/healthz): the worker loop went round within the watchdog period. It fails on
a stuck batch or a deadlock, which is what a liveness probe should restart; nothing
else fails it, because a restart cures nothing else.

Readiness (/readyz): the worker can serve at full quality now. It fails while any of:
no group assignment yet; the model not loaded or failing its golden probe; Kafka
unreachable; the model's circuit breaker open or half-open (requests get fallbacks);
Redis unreachable (a ping at each probe, or its breaker open or half-open) when the model
reads stored features (requests get stale or default features). Other breakers (canary,
backup model, other regions' Redis) are shown but do not fail it: the active model still
answers at full quality. A worker that is not ready keeps serving degraded; readiness
tells an orchestrator and an operator that it is degraded, and why. Both endpoints
answer JSON that names every check.

On Kubernetes, point the liveness probe at /healthz and the readiness probe at /readyz:
liveness never fails because Kafka, Redis or the model are down (a restart would not
bring them back), so a worker rides out an outage instead of crash-looping.

/metrics answers GET and HEAD, in the Prometheus text format or, when the scraper's
Accept header asks for it, OpenMetrics. ``/`` lists the endpoints.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

# Breakers whose open (or half-open) state makes a worker unready: the active model's.
READINESS_BREAKERS = ("model",)
ENDPOINTS = {
    "/healthz": "liveness: the worker loop went round within the watchdog period",
    "/readyz": "readiness: serving at full quality now (every check named)",
    "/metrics": "Prometheus metrics (OpenMetrics when the Accept header asks)",
}


@dataclass
class HealthState:
    """What the worker loop reports; read by the HTTP handlers (under a lock)."""

    watchdog_s: float = 30.0
    last_loop: float = field(default_factory=time.monotonic)
    group_joined: bool = False
    assigned: int = 0
    model: str = ""
    model_loaded: bool = False
    probe_ok: bool = True
    probe_detail: str = "not run yet"
    kafka_reachable: bool = True
    kafka_detail: str = "ok"
    breakers: dict[str, str] = field(default_factory=dict)
    redis_required: bool = False  # the model reads stored features
    redis_ok: bool = True
    redis_detail: str = "not checked yet"
    region: str = ""  # the region served, for workers following --regions
    lock: threading.Lock = field(default_factory=threading.Lock)

    def beat(self) -> None:
        """The loop went round."""
        with self.lock:
            self.last_loop = time.monotonic()

    def update(self, **changes: Any) -> None:
        """Set fields atomically."""
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def set_breaker(self, name: str, state: str) -> None:
        """Record a breaker's state for /readyz."""
        with self.lock:
            self.breakers[name] = state

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Alive when the loop went round within the watchdog period."""
        with self.lock:
            age = time.monotonic() - self.last_loop
        ok = age <= self.watchdog_s
        return ok, {"status": "ok" if ok else "stuck",
                    "loop_age_s": round(age, 3), "watchdog_s": self.watchdog_s}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every check passes; the body names each one."""
        with self.lock:
            checks = {
                "group": {"ok": self.group_joined,
                          "detail": f"{self.assigned} partition(s) assigned"
                          if self.group_joined else "not joined yet"},
                "model": {"ok": self.model_loaded,
                          "detail": self.model if self.model_loaded else "not loaded"},
                "model_probe": {"ok": self.probe_ok, "detail": self.probe_detail},
                "kafka": {"ok": self.kafka_reachable, "detail": self.kafka_detail},
                # Open breakers degrade serving (fallbacks answer): not full quality.
                "breakers": {"ok": all(self.breakers.get(b, "closed") == "closed"
                                       for b in READINESS_BREAKERS),
                             "detail": ", ".join(f"{k}: {v}" for k, v in
                                                 sorted(self.breakers.items())) or "all closed"},
            }
            redis_breaker = self.breakers.get("redis", "closed")
            if self.redis_required:
                checks["redis"] = {
                    "ok": self.redis_ok and redis_breaker == "closed",
                    "detail": self.redis_detail if not self.redis_ok
                    else f"ok (breaker {redis_breaker})"}
            else:
                checks["redis"] = {"ok": True, "detail": "not required (no feature views)"}
            if self.region:
                checks["region"] = {"ok": True, "detail": f"serving {self.region}"}
        alive, live = self.liveness()
        checks["loop"] = {"ok": alive, "detail": f"last iteration {live['loop_age_s']}s ago"}
        ok = all(c["ok"] for c in checks.values())
        return ok, {"status": "ready" if ok else "unready", "checks": checks}


@dataclass(frozen=True)
class HttpAccess:
    """Who may read the endpoints: a bearer token and/or TLS (mutual when the context
    requires client certificates). Without a token everything is open, as before."""

    token: str | None = None
    tls: ssl.SSLContext | None = None
    client_cert: bool = False  # mutual TLS: a client certificate the CA signed is required

    def authorized(self, header: str | None, peer_cert: Any = None) -> bool:
        """Whether a request may see /metrics and the details: its ``Authorization``
        header carries the token (compared in constant time) and, with mutual TLS, it
        presented a certificate (verified during the handshake)."""
        if self.client_cert and not peer_cert:
            return False
        if self.token is None:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self.token}".encode())


class HealthServer:
    """A small threaded HTTP server in a daemon thread: /healthz, /readyz and /metrics, or
    /metrics alone when ``state`` is None (the feature app, the autoscaler).

    With a token (``access``), /metrics needs ``Authorization: Bearer <token>``, and
    /healthz and /readyz answer their status code to anyone (orchestrator probes carry no
    secret) but their details (checks, errors, model names) only with the token. With TLS
    the server speaks HTTPS; with a client CA (mutual TLS), a presented certificate must
    be one the CA signed (else the handshake fails), and /metrics and the details need one
    (probes, which present none, still get the status code)."""

    def __init__(self, state: HealthState | None, registry: CollectorRegistry,
                 host: str = "127.0.0.1", port: int = 0,
                 access: HttpAccess | None = None) -> None:
        self.state = state
        self.registry = registry
        self.access = access or HttpAccess()
        handler = self._handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        if self.access.tls is not None:
            # The handshake happens in the request's thread (do_handshake in setup), so a
            # slow or silent client cannot hold up the accepting thread.
            self._server.socket = self.access.tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="health-http")

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL."""
        host = self._server.server_address[0]
        scheme = "https" if self.access.tls is not None else "http"
        return f"{scheme}://{host!s}:{self.port}"

    def start(self) -> HealthServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        state, registry, access = self.state, self.registry, self.access
        endpoints = ENDPOINTS if state is not None else {"/metrics": ENDPOINTS["/metrics"]}

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # seconds a client may take (the TLS handshake included)

            refused = False  # the TLS handshake failed: nothing to answer

            def setup(self) -> None:
                super().setup()
                if isinstance(self.connection, ssl.SSLSocket):
                    self.connection.settimeout(self.timeout)
                    try:
                        self.connection.do_handshake()
                    except (ssl.SSLError, OSError):
                        self.refused = True  # a stranger's certificate, plain HTTP, a timeout

            def handle(self) -> None:
                if not self.refused:
                    super().handle()

            def finish(self) -> None:
                # the peer went away mid-answer, or never finished the handshake
                with contextlib.suppress(ssl.SSLError, OSError):
                    super().finish()

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                peer = (self.connection.getpeercert()
                        if isinstance(self.connection, ssl.SSLSocket) else None)
                authorized = access.authorized(self.headers.get("Authorization"), peer)
                if path == "/metrics":
                    if not authorized:
                        self._json(401, {"error": "/metrics needs a client certificate "
                                                  "(mutual TLS) and/or Authorization: Bearer "
                                                  "<token> (--health-token)"}, body,
                                   {"WWW-Authenticate": 'Bearer realm="streaminfer"'})
                        return
                    encoder, ctype = choose_encoder(self.headers.get("Accept") or "")
                    self._send(200, encoder(registry), ctype, body)
                elif path in ("/healthz", "/readyz") and state is not None:
                    ok, out = state.liveness() if path == "/healthz" else state.readiness()
                    if not authorized:  # the verdict for probes; the details for the token
                        out = {"status": out["status"]}
                    self._json(200 if ok else 503, out, body)
                elif path == "/":
                    self._json(200, {"endpoints": endpoints}, body)
                else:
                    self._json(404, {"error": f"no such endpoint {path}; try "
                                              f"{', '.join(endpoints)}"}, body)

            def _json(self, code: int, out: dict[str, Any], body: bool,
                      headers: dict[str, str] | None = None) -> None:
                self._send(code, json.dumps(out).encode(), "application/json", body, headers)

            def _send(self, code: int, payload: bytes, ctype: str, body: bool,
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds must not flood the logs

        return Handler
