"""``python -m stream.observability.healthcheck``: the container image's HEALTHCHECK.

Asks the worker's own ``/healthz`` (process 0: ``STREAMINFER_HEALTH_PORT``, default 9400)
and exits 0 when it answers 200, 1 otherwise, printing why. Standard library only, so the
check costs no more than starting the interpreter.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(port: int, timeout_s: float = 2.0) -> tuple[bool, str]:
    """Whether ``/healthz`` on 127.0.0.1:``port`` answers 200, and what it said."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}: {exc.read(2000).decode(errors='replace')}"
    except OSError as exc:
        return False, f"{url}: {exc} (is the worker started with a health port?)"


def main() -> int:
    """Exit status for Docker's HEALTHCHECK."""
    ok, detail = check(int(os.environ.get("STREAMINFER_HEALTH_PORT") or 9400))
    print(detail.strip()[:500])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
