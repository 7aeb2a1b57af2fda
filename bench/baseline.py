"""A past commit of streaminfer as a benchmark peer: ``streaminfer-alo@<ref>``.

``bash bench/run.sh --baseline <ref>`` exports the commit's tree once (``git archive``)
into ``$STREAMINFER_HOME/bench-baselines/<sha>/`` (outside the source tree) and runs its
worker with the same interpreter, cluster, model and corpus as today's, so a change's
effect on throughput is measured side by side in one run instead of against a figure from
another day. Its dependencies are today's ``.venv``: refs whose dependencies differ need
their own environment.
"""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from stream.settings import state_dir

ROOT = Path(__file__).resolve().parents[1]


def split(system: str) -> tuple[str, str | None]:
    """``streaminfer-alo@abc123`` -> ("streaminfer-alo", "abc123")."""
    name, _, ref = system.partition("@")
    return name, ref or None


def tree(ref: str) -> Path:
    """The exported source tree of ``ref`` (exported on first use)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--baseline {ref}: not a commit of this repository "
                         f"({exc.stderr.strip()}); pass a sha, tag or branch") from exc
    target = state_dir() / "bench-baselines" / sha[:12]
    if not (target / ".exported").exists():
        archive = subprocess.run(["git", "archive", "--format=tar", sha], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
        (target / ".exported").write_text(sha + "\n")
    return target


def cli_module(source: Path) -> str:
    """The worker command's module in that tree (it moved into a package once)."""
    return "stream.cli.main" if (source / "stream" / "cli" / "main.py").exists() else "stream.cli"
