"""The access declaration refuses what would reach further than it says (issue 34,
items 10 and 14): reserved principal names and prefixes without a separator."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.access.declaration import load
from stream.exceptions import ConfigurationError


def declare(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "access.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["broker", "Broker", "default", "ANONYMOUS"])
def test_reserved_principal_names_are_refused(tmp_path: Path, name: str) -> None:
    path = declare(tmp_path, f'[principals.{name}]\nkafka = []\n')
    with pytest.raises(ConfigurationError, match=f"principal name '{name}' is reserved"):
        load(path)


def test_a_prefix_without_a_separator_is_refused_naming_what_else_it_reaches(
        tmp_path: Path) -> None:
    path = declare(tmp_path, '[principals.mm]\nkafka = [\n  { resource = "group", name = '
                             '"{ns}", pattern = "prefixed", operations = ["read"] },\n]\n')
    with pytest.raises(ConfigurationError, match=r"principals\.mm\.kafka\[0\]: the prefix "
                                                 r"'\{ns\}' has no separator"):
        load(path)


def test_the_packaged_declaration_keeps_every_prefix_inside_its_namespace() -> None:
    """No prefixed grant of the packaged declaration, rendered for namespace `ns`, matches
    a name of namespace `ns2` (MirrorMaker's group grant `{ns}` did)."""
    rendered = load(namespace="ns")
    other = ["ns2.requests", "ns2.inference", "east.ns2.models", "west.ns2.requests",
             "ns2-features-events-0", "ns2.dlq.x", "ns2.seed.1"]
    for name, principal in rendered.principals.items():
        for grant in principal.kafka:
            if grant.pattern != "prefixed":
                continue
            reached = [o for o in other if o.startswith(grant.name)]
            assert reached == [], (name, grant.name, reached)


def test_the_docs_table_has_a_row_for_every_declared_principal() -> None:
    """docs/running-securely.md's "Who can do what" is checked cell by cell on the secure
    stack (tests/integration/test_secure_matrix.py); a principal added to the declaration
    needs its row there too."""
    docs = (Path(__file__).parents[2] / "docs" / "running-securely.md").read_text()
    table = docs[docs.index("## Who can do what"):docs.index("## How it works")]
    missing = [p for p in load().principals if f"(`{p}`)" not in table]
    assert missing == [], f"no row in running-securely's table for {missing}"
