"""A registry in a directory: ``<root>/<name>/<version>/`` with a MANIFEST.json.

Publishing copies the model directory (model.onnx, model.json and whatever sits beside
them: features.json, golden.json, a backup model), records every file's sha256 in the
manifest, makes the files read-only and renames the version into place atomically.
A version, once published, never changes: publishing it again is refused. Fetching
copies every file into a private directory, hashing what it copies, and refuses a
version whose files do not match its manifest or whose manifest names another version.

Optionally the manifest is signed (Ed25519, :mod:`processors.registry.signing`): publish
with ``sign_key`` writes SIGNATURE.json beside it; a registry built with
``trusted_keys`` refuses a version whose signature is by an unknown key or does not
verify, and an unsigned one: with trusted keys, signatures are required
(``require_signature`` without keys is refused: it would check nothing).
"""

from __future__ import annotations

import atexit
import builtins
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from processors.model import OnnxModel
from processors.registry import signing
from processors.registry.base import ArtifactInfo, RegistryError

MANIFEST = "MANIFEST.json"
RUNS = ".retrain-runs"  # <root>/<name>/.retrain-runs/<run_id>.json: retraining reports
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_COPIES: list[Path] = []  # private copies fetch() made, removed at exit


@atexit.register
def _remove_copies() -> None:
    for copy in _COPIES:
        shutil.rmtree(copy, ignore_errors=True)


def _copy_hashed(src: Path, dst: Path) -> dict[str, str]:
    """Copy the version's files (not its manifest or signature) from ``src`` into
    ``dst``, hashing the bytes as they are written: relative path -> sha256."""
    out: dict[str, str] = {}
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.name in (MANIFEST, signing.SIGNATURE):
            continue
        rel = path.relative_to(src)
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("rb") as fin, target.open("wb") as fout:
            while chunk := fin.read(1 << 20):
                digest.update(chunk)
                fout.write(chunk)
        out[str(rel)] = digest.hexdigest()
    return out


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, signing.SIGNATURE)}


class DirectoryRegistry:
    """Immutable model versions under one directory."""

    def __init__(self, root: Path, trusted_keys: list[Path] | None = None,
                 require_signature: bool = False) -> None:
        self.root = Path(root)
        self.trusted = signing.load_public(trusted_keys or [])
        # Trusting keys and accepting what no key signed would let anyone who can write
        # the registry delete SIGNATURE.json (issue 34, item 9).
        self.require_signature = require_signature or bool(self.trusted)
        if require_signature and not self.trusted:
            raise RegistryError("signatures are required but no trusted key is given: set "
                                "--model-trusted-keys to the publishers' public key files")

    def _dir(self, name: str, version: str) -> Path:
        for label, value in (("name", name), ("version", version)):
            if not _NAME.match(value):
                raise RegistryError(f"model {label} {value!r} must be 1-100 characters of "
                                    "letters, digits, '.', '_' or '-'")
        return self.root / name / version

    def publish(self, source: Path, name: str, version: str,
                tags: dict[str, str] | None = None,
                sign_key: Path | None = None) -> ArtifactInfo:
        """Copy, verify by loading, hash and freeze a model directory as name/version
        (signing its manifest with ``sign_key``, an Ed25519 private key file)."""
        private = signing.load_private(sign_key) if sign_key is not None else None
        target = self._dir(name, version)
        if target.exists():
            raise RegistryError(f"{name} v{version} is already published in {self.root}; "
                                "versions are immutable: publish a new version instead")
        source = Path(source)
        src_dir = source if source.is_dir() else source.parent
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / name).mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.root / name))
        try:
            shutil.copytree(src_dir, staging, dirs_exist_ok=True)
            meta_path = staging / "model.json"
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                meta.update({"name": name, "version": version})
                meta["sha256"] = _sha256(staging / "model.onnx") \
                    if (staging / "model.onnx").exists() else meta.get("sha256")
                meta_path.write_text(json.dumps(meta, indent=2) + "\n")
            model = OnnxModel.load(staging)  # refuses what would not serve
            views: list[str] = []
            features_json = staging / "features.json"
            if features_json.exists():
                views = [v["name"] for v in json.loads(features_json.read_text()).get("views", [])]
            info = ArtifactInfo(
                name=name, version=version, created_at=time.time(), files=_files(staging),
                signature={"input": model.meta.input, "output": model.meta.output,
                           "features": list(model.meta.features)},
                feature_views=views, tags=dict(tags or {}),
                metrics=dict(model.meta.raw.get("metrics", {})))
            manifest = (json.dumps(asdict(info), indent=2) + "\n").encode()
            (staging / MANIFEST).write_bytes(manifest)
            if private is not None:
                (staging / signing.SIGNATURE).write_text(
                    json.dumps(signing.sign(manifest, private), indent=2) + "\n")
            for path in staging.rglob("*"):
                if path.is_file():
                    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.rename(staging, target)  # atomic: a version appears whole or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return info

    def info(self, name: str, version: str) -> ArtifactInfo:
        """A version's manifest."""
        path = self._dir(name, version) / MANIFEST
        if not path.exists():
            raise RegistryError(f"{name} v{version} is not in the registry at {self.root}")
        return ArtifactInfo(**json.loads(path.read_text()))

    def list(self, name: str | None = None) -> list[ArtifactInfo]:
        """Published versions, oldest first."""
        if not self.root.exists():
            return []
        names = [name] if name else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        out = []
        for n in names:
            for vdir in sorted((self.root / n).glob("*/" + MANIFEST)):
                out.append(ArtifactInfo(**json.loads(vdir.read_text())))
        return sorted(out, key=lambda a: (a.name, a.created_at))

    def signature(self, name: str, version: str) -> signing.SignatureCheck:
        """What the version's signature says, checked with the trusted keys."""
        folder = self._dir(name, version)
        return signing.check(folder, (folder / MANIFEST).read_bytes(), self.trusted)

    def fetch(self, name: str, version: str) -> Path:
        """A private copy of the version's files, each checked against the manifest (and
        the manifest against its signature, when keys are trusted), to load from.

        The manifest is read once: its signature, the name and version it names (a
        signed ``fraud/1`` copied to ``fraud/9`` is refused) and the file hashes all come
        from those same bytes. The files are hashed as they are copied into a directory
        only this process can write, and the copy is what is returned, so what is loaded
        is what was verified even if the registry changes meanwhile (no check-then-use).
        Copies are removed when the process exits."""
        folder = self._dir(name, version)
        try:
            manifest = (folder / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"{name} v{version} is not in the registry at {self.root}") \
                from None
        if self.trusted:
            verdict = signing.check(folder, manifest, self.trusted)
            refuse = verdict.state in ("bad-signature", "unknown-key") or (
                self.require_signature and not verdict.ok)
            if refuse:
                raise RegistryError(f"{name} v{version} is refused: {verdict.detail}"
                                    + (" (signatures are required)"
                                       if verdict.state == "unsigned" else "")
                                    + "; it will not be loaded")
        info = ArtifactInfo(**json.loads(manifest))
        if (info.name, info.version) != (name, version):
            raise RegistryError(f"{name} v{version} is refused: its manifest is that of "
                                f"{info.name} v{info.version} (a version copied or renamed "
                                "in the registry); it will not be loaded")
        if info.tags.get("decision") == "rejected":
            raise RegistryError(f"{name} v{version} was rejected by the retraining gates "
                                f"({info.tags.get('reason', 'see its report.json')}); it is "
                                "kept for inspection and never served")
        copy = Path(tempfile.mkdtemp(prefix=f"streaminfer-{name}-{version}-"))
        _COPIES.append(copy)
        actual = _copy_hashed(folder, copy)
        if actual != info.files:
            changed = sorted(k for k in set(actual) | set(info.files)
                             if actual.get(k) != info.files.get(k))
            shutil.rmtree(copy, ignore_errors=True)
            raise RegistryError(f"{name} v{version} in {folder} is corrupt: {changed} differ "
                                "from its manifest; it will not be loaded")
        (copy / MANIFEST).write_bytes(manifest)
        for path in copy.rglob("*"):
            if path.is_file():
                path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        return copy

    def record_run(self, name: str, run_id: str, report: dict[str, Any]) -> Path:
        """Keep a retraining run's report beside the model's versions (latest wins)."""
        folder = self.root / name / RUNS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{run_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path

    def runs(self, name: str, last: int = 5) -> builtins.list[dict[str, Any]]:
        """The latest retraining reports of ``name``, newest first."""
        folder = self.root / name / RUNS
        if not folder.exists():
            return []
        paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        return [json.loads(p.read_text()) for p in paths[:last]]
