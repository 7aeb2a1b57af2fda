"""Small modules, one concept each: a size budget a newcomer can read in one sitting.

No source module over 400 lines and no class with more than 25 methods, in every package
(tests excluded: a test module is a list of cases, not a concept)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["schemas", "fallback", "processors", "stream", "bench"]
MAX_LINES = 400
MAX_METHODS = 25


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_no_module_is_over_the_line_budget() -> None:
    over = {str(p.relative_to(ROOT)): n for p in sources()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by concept): {over}"


def test_no_class_has_more_methods_than_the_budget() -> None:
    over = {}
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                methods = [n for n in node.body
                           if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
                if len(methods) > MAX_METHODS:
                    over[f"{path.relative_to(ROOT)}:{node.name}"] = len(methods)
    assert not over, f"classes over {MAX_METHODS} methods (give parts their own class): {over}"


def test_the_budget_sees_every_package() -> None:
    assert len(sources()) > 100  # a wrong ROOT would pass the checks above vacuously


def test_the_runtime_package_shows_its_concerns_at_the_top() -> None:
    """``stream/`` lists a handful of modules and one package per concern, not fifty files."""
    stream = ROOT / "stream"
    modules = sorted(p.name for p in stream.glob("*.py") if p.name != "__init__.py")
    packages = sorted(p.name for p in stream.iterdir() if (p / "__init__.py").exists())
    assert len(modules) <= 5, modules
    assert {"worker", "regions", "cli", "devcluster", "settings"} <= set(packages), packages
    for package in packages:  # each says what it is for
        assert ast.get_docstring(ast.parse((stream / package / "__init__.py").read_text())), package
