"""A worker runs without the extras: no testcontainers, Docker SDK, pyarrow, scikit-learn or
skl2onnx (the retrain extra)."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ("testcontainers", "docker", "pyarrow", "sklearn", "skl2onnx")
PROBE = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
import stream.worker.loop, stream.regions.policy, stream.worker.supervisor  # noqa: E401
import stream.cli.main, stream.features.faust_app  # noqa: E401
from click.testing import CliRunner
from stream.cli.main import cli
assert CliRunner().invoke(cli, ["worker", "--help"]).exit_code == 0
result = CliRunner().invoke(cli, ["dev", "status"])
assert result.exit_code != 0 and "streaminfer[devcluster]" in result.output, result.output
result = CliRunner().invoke(cli, ["retrain", "run", "fraud"])
assert result.exit_code != 0 and "streaminfer[retrain]" in result.output, result.output
print("ok")
"""


def test_the_worker_imports_and_runs_without_the_dev_extras() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok", done.stderr[-3000:]
