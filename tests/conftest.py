"""Shared test set-up: isolate from any dev cluster the user has running."""

from __future__ import annotations

import os
import tempfile

# Commands read ~/.streaminfer/dev.env; tests must see only the settings they pass.
os.environ["STREAMINFER_HOME"] = tempfile.mkdtemp(prefix="streaminfer-test-home-")
for _key in [k for k in os.environ if k.startswith("STREAMINFER_") and k != "STREAMINFER_HOME"
             and not k.startswith("STREAMINFER_TEST_")]:
    del os.environ[_key]

# Test brokers start with the C1 compiler only: a three-node cluster is up in about 15 s
# instead of 25 s on two cores (stream/devcluster/cluster.py), and every broker restart of
# the chaos tests is faster too. STREAMINFER_TEST_KAFKA_OPTS overrides it ("" for none).
os.environ["STREAMINFER_KAFKA_OPTS"] = os.environ.get("STREAMINFER_TEST_KAFKA_OPTS",
                                                      "-XX:TieredStopAtLevel=1")
