"""The directory model registry: immutable, hash-verified versions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.registry.base import RegistryError
from processors.registry.directory import DirectoryRegistry
from stream.cli.main import cli


def test_publish_list_fetch_and_load(tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path / "reg")
    info = registry.publish(DEFAULT_MODEL_DIR, "fraud", "2", {"owner": "risk"})
    assert info.version == "2"
    assert info.tags == {"owner": "risk"}
    assert info.feature_views == ["card_activity"]
    assert len(info.signature["features"]) == 30
    assert {"model.onnx", "model.json", "golden.json", "backup/model.onnx"} <= set(info.files)
    folder = registry.fetch("fraud", "2")
    model = OnnxModel.load(folder)
    assert (model.name, model.version) == ("fraud", "2")
    assert not os.stat(folder / "model.onnx").st_mode & stat.S_IWUSR  # read-only
    registry.publish(DEFAULT_MODEL_DIR, "fraud", "3")
    assert [a.version for a in registry.list("fraud")] == ["2", "3"]


def test_versions_are_immutable(tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path)
    registry.publish(DEFAULT_MODEL_DIR, "fraud", "2")
    with pytest.raises(RegistryError, match=r"already published.*immutable"):
        registry.publish(DEFAULT_MODEL_DIR, "fraud", "2")


def test_a_corrupt_artifact_is_refused(tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path)
    registry.publish(DEFAULT_MODEL_DIR, "fraud", "2")
    onnx = tmp_path / "fraud" / "2" / "model.onnx"
    onnx.chmod(0o644)
    onnx.write_bytes(onnx.read_bytes()[:-10])
    with pytest.raises(RegistryError, match=r"corrupt: \['model.onnx'\] differ"):
        registry.fetch("fraud", "2")


def test_a_model_that_would_not_serve_is_not_published(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not onnx")
    (broken / "model.json").write_text(json.dumps({
        "name": "x", "version": "1", "input": "features", "output": "score",
        "features": ["a"]}))
    registry = DirectoryRegistry(tmp_path / "reg")
    with pytest.raises(Exception, match="ONNX Runtime cannot load it"):
        registry.publish(broken, "x", "1")
    assert registry.list() == []  # nothing half-published


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"model version '\.\./x'"):
        DirectoryRegistry(tmp_path).publish(DEFAULT_MODEL_DIR, "fraud", "../x")


def test_cli_publish_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMINFER_REGISTRY_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "publish", str(DEFAULT_MODEL_DIR), "--name", "fraud",
                                 "--version", "7", "--tag", "stage=canary"])
    assert result.exit_code == 0, result.output
    assert "published fraud v7" in result.output
    listed = runner.invoke(cli, ["models", "list"])
    [row] = [json.loads(line) for line in listed.output.splitlines()]
    assert row["version"] == "7"
    assert row["tags"] == {"stage": "canary"}
