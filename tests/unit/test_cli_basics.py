"""What a user types first: the version, and help that names what a flag touches."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from click.testing import CliRunner

from stream.cli.main import cli


def test_version_is_the_installed_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"streaminfer, version {version('streaminfer')}"


def test_topics_has_list_and_ensure() -> None:
    result = CliRunner().invoke(cli, ["topics", "--help"])
    assert result.exit_code == 0
    assert "list" in result.output
    assert "ensure" in result.output


def test_models_list_on_an_empty_registry_points_at_the_shipped_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "list", "--registry-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert f"no published versions in {tmp_path}" in result.output
    assert "shipped model fraud v1" in result.output
    assert "streaminfer models publish" in result.output
    assert "models promote fraud 1" in result.output
