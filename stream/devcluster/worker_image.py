"""Build the worker image (``streaminfer/worker``) without a registry.

The recipe is ``compose/worker/Dockerfile.offline``: a debootstrapped Debian bookworm
with Python 3.11 (``compose/worker/packages.txt``), the runtime dependencies exactly as
``compose/locks/runtime.txt`` pins them and the streaminfer wheel built from this
checkout. The dependency wheels are fetched here with pip for the image's platform
(CPython 3.11, manylinux x86_64), whatever Python runs this, with every hash checked
against the lock; the image installs them offline and checks the hashes again.

The image's label is a hash of the recipe, the lock, the base and the package sources, so
an unchanged checkout skips the build.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from stream.devcluster.images import (
    _build,
    _hash_files,
    _image_label,
    cache_dir,
    compose_dir,
    ensure_base_image,
)
from stream.devcluster.progress import say, step
from stream.exceptions import InfrastructureError

WORKER_VERSION = "0.1.0"
DEFAULT_WORKER_IMAGE = f"streaminfer/worker:{WORKER_VERSION}"
PACKAGES = ("stream", "processors", "schemas", "fallback")
# The image's platform, for pip on any host: Debian bookworm has CPython 3.11, glibc 2.36.
PLATFORM_ARGS = ("--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
                 "--abi", "cp311", "--platform", "manylinux_2_36_x86_64",
                 "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                 "--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64")


def runtime_lock() -> Path:
    """The runtime lock (hashes for every wheel); refresh it as docs/development.md says."""
    return compose_dir() / "locks" / "runtime.txt"


def _source_files(root: Path) -> list[Path]:
    files = [root / "pyproject.toml", root / "README.md"]
    for package in PACKAGES:
        files += sorted(p for p in (root / package).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def _source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _dependency_wheels() -> Path:
    """The lock's wheels for the image's platform, hashes checked (once per lock)."""
    lock = runtime_lock()
    where = cache_dir() / f"worker-wheels-{_hash_files(lock)}"
    if (where / ".complete").exists():
        return where
    shutil.rmtree(where, ignore_errors=True)
    with step(f"fetching the runtime wheels pinned in {lock.name} (first time: ~10 s)"):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--require-hashes", "-r", str(lock), *PLATFORM_ARGS, "-d", str(where)],
            capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            raise InfrastructureError(
                f"pip could not fetch the wheels pinned in {lock} (exit {done.returncode}); "
                f"check that PyPI is reachable; a hash mismatch means the lock or the index "
                f"changed: refresh the lock (docs/development.md):\n{done.stderr[-2000:]}")
    shutil.copy2(lock, where / "runtime.txt")
    (where / ".complete").write_text(lock.read_text())
    return where


def _project_wheel(root: Path, out: Path) -> None:
    """The streaminfer wheel, built from a copy of the sources (the checkout stays clean)."""
    with tempfile.TemporaryDirectory(prefix="src-", dir=cache_dir()) as tmp:
        src = Path(tmp)
        for path in _source_files(root):
            target = src / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        with step("building the streaminfer wheel"):
            done = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                 "--no-deps", "-w", str(out), str(src)],
                capture_output=True, text=True, check=False, timeout=600)
            if done.returncode != 0:
                raise InfrastructureError(f"building the streaminfer wheel failed "
                                          f"(exit {done.returncode}):\n{done.stderr[-2000:]}")


def ensure_worker_image(image: str = DEFAULT_WORKER_IMAGE) -> str:
    """Build the worker image when it is ours and missing or older than the checkout.
    One build at a time per cache (a file lock): a second caller waits for the first and
    then finds the image built (the test command starts a build in the background)."""
    if image != DEFAULT_WORKER_IMAGE:
        return image
    with (cache_dir() / "worker-image.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure(image)


def _ensure(image: str) -> str:
    recipe_dir = compose_dir() / "worker"
    root = compose_dir().parent
    base = ensure_base_image("worker")
    recipe = _hash_files(recipe_dir / "Dockerfile.offline", runtime_lock(),
                         extra=base + _source_digest(root))
    if _image_label(image) != recipe:
        wheels = _dependency_wheels()
        with tempfile.TemporaryDirectory(prefix="wheels-", dir=cache_dir()) as tmp:
            ctx_wheels = Path(tmp) / "wheels"
            shutil.copytree(wheels, ctx_wheels, ignore=shutil.ignore_patterns(".complete"))
            _project_wheel(root, ctx_wheels)
            _build(image, recipe_dir, base, recipe, None, dockerfile="Dockerfile.offline",
                   extra_dirs={"wheels": ctx_wheels})
    say(f"image ready: {image}")
    return image
