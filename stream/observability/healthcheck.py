"""``python -m stream.observability.healthcheck``: the container image's HEALTHCHECK.

Asks the worker's own ``/healthz`` (process 0: ``STREAMINFER_HEALTH_PORT``, default 9400)
and exits 0 when it answers 200, 1 otherwise, printing why. Standard library only, so the
check costs no more than starting the interpreter.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request


def check(port: int, timeout_s: float = 2.0, tls: bool = False) -> tuple[bool, str]:
    """Whether ``/healthz`` on 127.0.0.1:``port`` answers 200, and what it said. With
    ``tls`` over HTTPS without checking the certificate: this asks the container's own
    process on its loopback, and only the status code matters."""
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz"
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s,  # noqa: S310 - our own loopback http(s) URL
                                    context=context) as response:
            return response.status == 200, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}: {exc.read(2000).decode(errors='replace')}"
    except OSError as exc:
        return False, f"{url}: {exc} (is the worker started with a health port?)"


def main() -> int:
    """Exit status for Docker's HEALTHCHECK."""
    ok, detail = check(int(os.environ.get("STREAMINFER_HEALTH_PORT") or 9400),
                       tls=bool(os.environ.get("STREAMINFER_HEALTH_TLS_CERT")))
    print(detail.strip()[:500])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
