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


def test_the_production_profile_refuses_a_flag_that_contradicts_it() -> None:
    result = CliRunner().invoke(cli, ["dev", "up", "--profile", "production", "--brokers", "1",
                                      "--regions", "2"])
    assert result.exit_code == 2
    assert "leave out --brokers 1, --regions 2" in result.output


def test_the_production_profile_gives_every_command_its_worker_settings(tmp_path: Path) -> None:
    from stream.devcluster.state import DevState

    def env(profile: str) -> dict[str, str]:
        return DevState("127.0.0.1:9092", "rediss://127.0.0.1:6379/0", 3, {}, "net", "k", "r",
                        0.0, secure_dir=str(tmp_path), profile=profile).env()

    production = env("production")
    assert production["STREAMINFER_GUARANTEE"] == "exactly-once"
    assert production["STREAMINFER_RECORD_INPUTS"] == "true"
    assert production["STREAMINFER_REQUIRE_SEALED"] == "true"
    assert production["STREAMINFER_FIELD_KEYS_FILE"] == str(tmp_path / "field-keys.json")
    assert "STREAMINFER_GUARANTEE" not in env("dev")


def test_the_production_profiles_model_declares_what_it_seals(tmp_path: Path) -> None:
    """The shipped model declares no sensitive feature, so "sealed and required sealed"
    would seal nothing: the profile serves a copy that declares some."""
    from stream.connect.field_keys import model_sensitive_features
    from stream.devcluster.state import PRODUCTION_SENSITIVE, DevState, ensure_sealed_model
    from stream.settings import Settings

    model = ensure_sealed_model(tmp_path)
    env = DevState("127.0.0.1:9092", "rediss://127.0.0.1:6379/0", 3, {}, "net", "k", "r",
                   0.0, secure_dir=str(tmp_path), profile="production").env()
    assert env["STREAMINFER_MODEL_PATH"] == str(model)
    assert model_sensitive_features(Settings(model_path=model)) == (
        "fraud", frozenset(PRODUCTION_SENSITIVE))
    assert model_sensitive_features(Settings()) is None  # the shipped model declares none
    assert ensure_sealed_model(tmp_path) == model  # again: replaced, not nested
    assert not (model / "model").exists()
