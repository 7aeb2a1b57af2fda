"""The README and docs stay true: the settings table is the code's, links resolve."""

from __future__ import annotations

from pathlib import Path

from stream.tools.settings_doc import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIGURATION = README.parent / "docs" / "configuration.md"


def test_configuration_reference_matches_the_code() -> None:
    assert settings_table() in CONFIGURATION.read_text(), (
        "docs/configuration.md's settings table is stale: paste the output of "
        "`.venv/bin/python -m stream.tools.settings_doc`")


def test_readme_is_a_front_door_whose_links_resolve() -> None:
    import re

    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for doc in [README, *sorted((README.parent / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+\.md)\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
    assert all(f"docs/{p.name}" in text for p in (README.parent / "docs").glob("*.md"))


def test_readme_names_the_two_commands_that_exist() -> None:
    text = README.read_text()
    root = README.parent
    for script in ("compose/demo.sh", "compose/test.sh"):
        assert f"bash {script}" in text
        assert (root / script).exists()
    assert "bash compose/test.sh" in (root / ".ci" / "run").read_text()
