"""The README stays true: its settings table is the code's."""

from __future__ import annotations

from pathlib import Path

from stream.settings_doc import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_matches_the_code() -> None:
    assert settings_table() in README.read_text(), (
        "README's configuration table is stale: paste the output of "
        "`.venv/bin/python -m stream.settings_doc`")


def test_readme_names_the_two_commands_that_exist() -> None:
    text = README.read_text()
    root = README.parent
    for script in ("compose/demo.sh", "compose/test.sh"):
        assert f"bash {script}" in text and (root / script).exists()
    assert "bash compose/test.sh" in (root / ".ci" / "run").read_text()
