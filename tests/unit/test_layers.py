"""Imports point one way: schemas <- fallback <- processors <- stream (and bench).

``schemas`` holds the wire format and the root error; ``fallback`` the degradation parts;
``processors`` the Kafka-free inference core; ``stream`` Kafka, processes and people.
A module may import from its own layer and the ones below, never above, and the core
never imports a Kafka or faust client. Checked on the source (every import statement,
also inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["schemas", "fallback", "processors", "stream"]  # bottom to top
CLIENTS = {"confluent_kafka", "faust", "aiokafka"}


def imported(path: Path) -> set[str]:
    """Top-level package names a module imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_no_package_imports_a_layer_above_it(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1:]) | {"bench", "tests"}
    wrong = {f"{p.relative_to(ROOT)} imports {sorted(imported(p) & above)}"
             for p in sorted((ROOT / layer).rglob("*.py")) if imported(p) & above}
    assert not wrong, "imports pointing up:\n" + "\n".join(sorted(wrong))


def test_the_inference_core_has_no_kafka_or_faust_client() -> None:
    for layer in ("schemas", "fallback", "processors"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            clients = imported(path) & CLIENTS
            assert not clients, f"{path.relative_to(ROOT)} imports {sorted(clients)}"


def test_module_names_say_one_thing() -> None:
    """No two modules share a name for different things (three 'registry' modules once
    meant worker announcements, schema fingerprints and model versions). Each package's
    ``exceptions`` module is the same thing: that package's errors."""
    seen: dict[str, list[str]] = {}
    for layer in [*LAYERS, "bench"]:
        for path in (ROOT / layer).rglob("*.py"):
            if path.name not in ("__init__.py", "exceptions.py"):
                seen.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not twice, f"modules sharing a name: {twice}"
