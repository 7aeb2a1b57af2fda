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

import json
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


class HealthServer:
    """A small threaded HTTP server in a daemon thread."""

    def __init__(self, state: HealthState, registry: CollectorRegistry,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self.registry = registry
        handler = self._handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
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
        return f"http://{host!s}:{self.port}"

    def start(self) -> HealthServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        state, registry = self.state, self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, ctype = choose_encoder(self.headers.get("Accept") or "")
                    self._send(200, encoder(registry), ctype, body)
                elif path == "/healthz":
                    ok, out = state.liveness()
                    self._json(200 if ok else 503, out, body)
                elif path == "/readyz":
                    ok, out = state.readiness()
                    self._json(200 if ok else 503, out, body)
                elif path == "/":
                    self._json(200, {"endpoints": ENDPOINTS}, body)
                else:
                    self._json(404, {"error": f"no such endpoint {path}; try "
                                              f"{', '.join(ENDPOINTS)}"}, body)

            def _json(self, code: int, out: dict[str, Any], body: bool) -> None:
                self._send(code, json.dumps(out).encode(), "application/json", body)

            def _send(self, code: int, payload: bytes, ctype: str, body: bool) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds must not flood the logs

        return Handler
