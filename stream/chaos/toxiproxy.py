"""Latency and packet loss on a broker's client path without the kernel's ``sch_netem``.

Toxiproxy (Shopify's TCP proxy with "toxics", built once from its Go module) runs inside
the broker container's network namespace, in front of the client listener: an iptables
``REDIRECT`` sends new client connections to it, ``ss -K`` closes the established ones so
that clients reconnect through it, its ``latency`` toxic delays what the broker sends,
and an iptables ``statistic`` rule drops that share of the broker's outgoing packets
(real loss: TCP retransmits). Inter-broker traffic (another listener) is untouched. The
heal deletes the rules, closes the proxied connections (clients reconnect directly) and
stops the proxy. Needs root, nsenter, iptables and ss on the host, and Go to build it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from stream.devcluster.images import cache_dir
from stream.devcluster.progress import step
from stream.exceptions import ConfigurationError

VERSION = "v2.12.0"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
API_PORT = 8474
PROXY_OFFSET = 20_000  # the proxy listens on the client port + this, inside the namespace


def ensure_toxiproxy() -> Path:
    """The toxiproxy server binary: ``$STREAMINFER_TOXIPROXY``, else built once with Go
    into the cache (about 15 s)."""
    given = os.environ.get("STREAMINFER_TOXIPROXY")
    if given:
        return Path(given)
    target = cache_dir() / f"toxiproxy-{VERSION}" / "toxiproxy-server"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise ConfigurationError(
            "the netem fault needs Toxiproxy on this kernel (no sch_netem), and Go to build "
            f"it ({MODULE}@{VERSION}); install Go or set STREAMINFER_TOXIPROXY to a "
            "toxiproxy-server binary")
    bindir = target.parent / "bin"
    with step(f"building Toxiproxy {VERSION} from its Go module (once)"):
        result = subprocess.run([go, "install", f"{MODULE}@{VERSION}"],  # noqa: S603 - fixed module path
                                env={**os.environ, "GOBIN": str(bindir)}, capture_output=True,
                                text=True, check=False, timeout=600)
        if result.returncode != 0:
            raise ConfigurationError(f"go install {MODULE}@{VERSION} failed: "
                                     f"{result.stderr.strip()[-1500:]}; check access to the "
                                     "Go module proxy (GOPROXY)")
        (bindir / "server").rename(target)
    return target


def _netns(pid: int, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd],  # noqa: S603, S607 - fixed tools
                          capture_output=True, text=True, check=check, timeout=30)


class NetnsProxy:
    """Toxiproxy in front of ``port`` inside the network namespace of process ``pid``,
    whose address ``ip`` the host reaches (a container on a bridge network)."""

    def __init__(self, pid: int, ip: str, port: int) -> None:
        self.pid, self.ip, self.port = pid, ip, port
        self.proxy_port = port + PROXY_OFFSET
        self._server: subprocess.Popen[bytes] | None = None
        self._rules: list[list[str]] = []

    @staticmethod
    def check_tools() -> None:
        """Refuse early when the host lacks what the proxy needs."""
        missing = [t for t in ("nsenter", "iptables", "ss") if shutil.which(t) is None]
        if missing:
            raise ConfigurationError(f"the netem fault (Toxiproxy) needs {', '.join(missing)} "
                                     "on this host (Debian: util-linux, iptables, iproute2) "
                                     "and root")

    def _api(self, path: str, body: dict[str, object]) -> None:
        request = urllib.request.Request(
            f"http://{self.ip}:{API_PORT}{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - as above
            pass

    def start(self, latency_ms: int, jitter_ms: int, loss_pct: float) -> None:
        """Proxy, toxics, redirect, loss; then close the direct connections."""
        listen = "0.0.0.0"  # noqa: S104 - inside the container's namespace
        self._server = subprocess.Popen(  # noqa: S603 - our built binary in the broker's namespace
            ["nsenter", "-t", str(self.pid), "-n", str(ensure_toxiproxy()),  # noqa: S607
             "-host", listen, "-port", str(API_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 15
        while True:
            try:
                self._api("/proxies", {"name": "broker", "listen": f"0.0.0.0:{self.proxy_port}",
                                       "upstream": f"127.0.0.1:{self.port}"})
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > end or self._server.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"Toxiproxy did not answer on {self.ip}:{API_PORT} "
                                       "within 15 s (is port 8474 free in the container?)") from None
                time.sleep(0.2)
        self._api("/proxies/broker/toxics", {"type": "latency", "stream": "downstream",
                                             "attributes": {"latency": latency_ms,
                                                            "jitter": jitter_ms}})
        self._rule(["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(self.port),
                    "-j", "REDIRECT", "--to-ports", str(self.proxy_port)])
        if loss_pct > 0:
            self._rule(["-A", "OUTPUT", "-p", "tcp", "--sport", str(self.proxy_port), "-m",
                        "statistic", "--mode", "random", "--probability",
                        f"{loss_pct / 100:.4f}", "-j", "DROP"])
        self._close(self.port)  # clients reconnect, now through the proxy

    def _rule(self, rule: list[str]) -> None:
        _netns(self.pid, "iptables", *rule)
        self._rules.append(rule)

    def _close(self, port: int) -> None:
        _netns(self.pid, "ss", "-K", "state", "established", f"( sport = :{port} )",
               check=False)

    def stop(self) -> None:
        """Rules out, proxied connections closed (clients reconnect directly), proxy gone."""
        for rule in reversed(self._rules):
            delete = ["-D" if part == "-A" else part for part in rule]
            _netns(self.pid, "iptables", *delete, check=False)
        self._rules = []
        self._close(self.proxy_port)
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            self._server.wait(10)
        self._server = None
