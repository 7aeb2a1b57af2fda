"""Signed model versions: Ed25519 over the manifest, checked on fetch; unsigned, unknown
or tampered versions are refused when signatures are required, with the reason named."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from processors.model import DEFAULT_MODEL_DIR
from processors.registry.base import RegistryError
from processors.registry.directory import MANIFEST, DirectoryRegistry
from processors.registry.signing import SIGNATURE, generate
from stream.cli.main import cli


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(private, public) of the publisher, and another public key."""
    generate(tmp_path / "pub.key", tmp_path / "pub.pem")
    generate(tmp_path / "other.key", tmp_path / "other.pem")
    return tmp_path / "pub.key", tmp_path / "pub.pem", tmp_path / "other.pem"


def writable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_a_signed_version_is_fetched_and_named_by_its_key(keys: tuple[Path, Path, Path],
                                                           tmp_path: Path) -> None:
    private, public, _other = keys
    DirectoryRegistry(tmp_path / "reg").publish(DEFAULT_MODEL_DIR, "fraud", "2",
                                                sign_key=private)
    registry = DirectoryRegistry(tmp_path / "reg", [public], require_signature=True)
    assert json.loads((registry.fetch("fraud", "2") / "model.json").read_text())["version"] == "2"
    check = registry.signature("fraud", "2")
    assert check.ok
    assert check.key_id is not None
    assert check.key_id in check.detail
    assert oct((private).stat().st_mode & 0o777) == "0o600"


def test_unsigned_unknown_and_tampered_versions_are_refused(
        keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    private, public, other = keys
    plain = DirectoryRegistry(tmp_path / "reg")
    plain.publish(DEFAULT_MODEL_DIR, "fraud", "1")  # unsigned
    plain.publish(DEFAULT_MODEL_DIR, "fraud", "2", sign_key=private)
    plain.publish(DEFAULT_MODEL_DIR, "fraud", "3", sign_key=private)

    required = DirectoryRegistry(tmp_path / "reg", [public], require_signature=True)
    with pytest.raises(RegistryError, match=r"v1 is refused: no SIGNATURE.json \(signatures are required\)"):
        required.fetch("fraud", "1")
    # Trusting keys requires signatures: deleting SIGNATURE.json is no way around them
    # (issue 34, item 9: it used to load without --model-require-signature).
    with pytest.raises(RegistryError, match="signatures are required"):
        DirectoryRegistry(tmp_path / "reg", [public]).fetch("fraud", "1")
    sig3 = tmp_path / "reg" / "fraud" / "3" / SIGNATURE
    writable(sig3.parent)
    kept = sig3.read_bytes()
    sig3.unlink()
    with pytest.raises(RegistryError, match="signatures are required"):
        DirectoryRegistry(tmp_path / "reg", [public]).fetch("fraud", "3")
    sig3.write_bytes(kept)
    assert DirectoryRegistry(tmp_path / "reg").fetch("fraud", "1")  # no keys: nothing checked

    # Tampered manifest (and matching file hashes): the signature no longer verifies.
    manifest = tmp_path / "reg" / "fraud" / "3" / MANIFEST
    writable(manifest)
    doc = json.loads(manifest.read_text())
    doc["tags"] = {"approved": "yes"}
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    with pytest.raises(RegistryError, match="does not match the manifest"):
        required.fetch("fraud", "3")
    with pytest.raises(RegistryError, match="does not match the manifest"):
        DirectoryRegistry(tmp_path / "reg", [public]).fetch("fraud", "3")

    # Signed by a key the workers do not trust.
    stranger = DirectoryRegistry(tmp_path / "reg", [other], require_signature=True)
    with pytest.raises(RegistryError, match="which is not trusted"):
        stranger.fetch("fraud", "2")

    # A signature file swapped in from another version.
    sig2 = tmp_path / "reg" / "fraud" / "2" / SIGNATURE
    sig1 = tmp_path / "reg" / "fraud" / "1" / SIGNATURE
    writable(sig1.parent)
    sig1.write_bytes(sig2.read_bytes())
    with pytest.raises(RegistryError, match="does not match the manifest"):
        required.fetch("fraud", "1")


def test_requiring_signatures_needs_a_trusted_key(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="--model-trusted-keys"):
        DirectoryRegistry(tmp_path, [], require_signature=True)


def test_keygen_publish_and_status_from_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMINFER_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    made = runner.invoke(cli, ["models", "keygen", "--out", str(tmp_path / "k")])
    assert made.exit_code == 0, made.output
    assert "key id" in made.output
    again = runner.invoke(cli, ["models", "keygen", "--out", str(tmp_path / "k")])
    assert again.exit_code != 0
    assert "exists" in again.output
    out = runner.invoke(cli, ["models", "publish", str(DEFAULT_MODEL_DIR), "--name", "fraud",
                              "--version", "5", "--sign-key", str(tmp_path / "k" / "signing.key")])
    assert out.exit_code == 0, out.output
    assert "signed" in out.output
    assert os.path.exists(tmp_path / "home" / "registry" / "fraud" / "5" / SIGNATURE)


def test_version_status_names_a_refused_version(keys: tuple[Path, Path, Path],
                                                tmp_path: Path) -> None:
    from stream.lifecycle.version_status import render
    from stream.settings import Settings

    private, public, _other = keys
    plain = DirectoryRegistry(tmp_path / "reg")
    plain.publish(DEFAULT_MODEL_DIR, "fraud", "1")
    plain.publish(DEFAULT_MODEL_DIR, "fraud", "2", sign_key=private)
    settings = Settings(registry_dir=tmp_path / "reg", model_trusted_keys=str(public),
                        model_require_signature=True)
    from stream.lifecycle.registry import registry_of

    registry = registry_of(settings)
    sigs = {v: registry.signature("fraud", v) for v in ("1", "2")}
    report = {"model": "fraud", "control": None, "published": ["1", "2"],
              "signatures": {v: {"state": c.state, "key_id": c.key_id, "detail": c.detail}
                             for v, c in sigs.items()},
              "require_signature": True, "versions": [], "shadow": [], "decisions": [],
              "workers": 0, "unreachable": []}
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render(report))
    text = console.export_text()
    assert "v1 refused" in text
    assert "no SIGNATURE.json" in text
    assert "v2 signature" in text


def test_a_signed_version_copied_to_another_version_is_refused(
        keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The signature covers the manifest, and the manifest names its version: a signed
    fraud/1 copied to fraud/9 (a substitution, or a downgrade behind a newer number)
    verifies but names v1, and is refused."""
    import shutil

    private, public, _other = keys
    DirectoryRegistry(tmp_path / "reg").publish(DEFAULT_MODEL_DIR, "fraud", "1",
                                                sign_key=private)
    shutil.copytree(tmp_path / "reg" / "fraud" / "1", tmp_path / "reg" / "fraud" / "9")
    shutil.copytree(tmp_path / "reg" / "fraud" / "1", tmp_path / "reg" / "churn" / "1")
    registry = DirectoryRegistry(tmp_path / "reg", [public])
    assert registry.signature("fraud", "9").ok  # the bytes verify...
    with pytest.raises(RegistryError, match="its manifest is that of fraud v1"):
        registry.fetch("fraud", "9")  # ...but they are v1's
    with pytest.raises(RegistryError, match="its manifest is that of fraud v1"):
        registry.fetch("churn", "1")


def test_what_is_loaded_is_the_private_copy_that_was_verified(
        keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Check-then-use: fetch hashes the bytes as it copies them into a directory of its
    own and returns that copy, so a file replaced in the registry after the check is
    never what loads."""
    from processors.model import OnnxModel

    private, public, _other = keys
    DirectoryRegistry(tmp_path / "reg").publish(DEFAULT_MODEL_DIR, "fraud", "2",
                                                sign_key=private)
    registry = DirectoryRegistry(tmp_path / "reg", [public])
    folder = registry.fetch("fraud", "2")
    assert tmp_path / "reg" not in folder.parents
    original = (folder / "model.onnx").read_bytes()
    onnx = tmp_path / "reg" / "fraud" / "2" / "model.onnx"
    writable(onnx.parent)
    writable(onnx)
    onnx.write_bytes(b"swapped after the check")
    assert (folder / "model.onnx").read_bytes() == original
    assert OnnxModel.load(folder).version == "2"
    with pytest.raises(RegistryError, match=r"corrupt: \['model.onnx'\]"):
        registry.fetch("fraud", "2")
