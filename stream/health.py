"""Per-worker HTTP endpoints: /healthz (alive), /readyz (able to serve), /metrics.

/healthz fails when the worker loop has not gone round within the watchdog period
(a stuck batch, a deadlock), which is what a liveness probe should restart.
/readyz fails while the worker cannot usefully serve: no group assignment yet, model
not loaded or failing its golden probe, or Kafka unreachable. Both answer JSON that
names every check, so a human can read why.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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
                # An open breaker degrades but does not stop serving: fallbacks answer.
                "breakers": {"ok": True, "detail": ", ".join(
                    f"{k}: {v}" for k, v in sorted(self.breakers.items())) or "all closed"},
            }
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
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok, body = state.liveness()
                    self._json(200 if ok else 503, body)
                elif path == "/readyz":
                    ok, body = state.readiness()
                    self._json(200 if ok else 503, body)
                else:
                    self._json(404, {"error": f"no such endpoint {path}; try /healthz, "
                                              "/readyz or /metrics"})

            def _json(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, payload: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds must not flood the logs

        return Handler
