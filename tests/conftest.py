"""Shared test set-up: isolate from any dev cluster the user has running."""

from __future__ import annotations

import os
import tempfile

# Commands read ~/.streaminfer/dev.env; tests must see only the settings they pass.
os.environ["STREAMINFER_HOME"] = tempfile.mkdtemp(prefix="streaminfer-test-home-")
for _key in [k for k in os.environ if k.startswith("STREAMINFER_") and k != "STREAMINFER_HOME"
             and not k.startswith("STREAMINFER_TEST_")]:
    del os.environ[_key]
