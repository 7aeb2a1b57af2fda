"""What a user types first: the version, and help that names what a flag touches."""

from __future__ import annotations

from importlib.metadata import version

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
