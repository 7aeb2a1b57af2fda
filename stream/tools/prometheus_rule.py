"""Write deploy/base/monitoring/prometheusrule.yaml from compose/prometheus/alerts.yml.

The alert rules have one source, the file promtool checks and unit-tests
(tests/unit/test_alerts.py); on Kubernetes the Prometheus Operator takes them as a
PrometheusRule. Run ``.venv/bin/python -m stream.tools.prometheus_rule`` after changing
the rules; a test fails while the two differ. (A development tool: it needs PyYAML, which
the dev extras install.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "compose" / "prometheus" / "alerts.yml"
TARGET = ROOT / "deploy" / "base" / "monitoring" / "prometheusrule.yaml"
HEADER = ("# Generated from compose/prometheus/alerts.yml by "
          "`python -m stream.tools.prometheus_rule`;\n# edit the rules there (promtool tests "
          "them), then regenerate. A test keeps the two equal.\n")


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule object holding the alert rules."""
    import yaml

    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "streaminfer",
                         "labels": {"app.kubernetes.io/part-of": "streaminfer"}},
            "spec": {"groups": groups}}


def main() -> int:
    """Write the file."""
    import yaml

    TARGET.write_text(HEADER + yaml.safe_dump(prometheus_rule(), sort_keys=False, width=100))
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
