"""Where the packages come from, and which way the imports of the inner layers point."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
LAYERS = ["domain", "application", "adapters", "entrypoints"]


@pytest.mark.parametrize("name", LAYERS)
def test_top_level_package_is_the_projects_own(name: str) -> None:
    # PyPI has unrelated distributions called `adapters` and `entrypoints`.
    module = importlib.import_module(name)
    assert module.__file__ is not None, f"{name} is a namespace package, not ours"
    path = Path(module.__file__).resolve()
    assert path == SRC / name / "__init__.py"
    assert path.parent.parent == SRC


def _modules(package: str) -> list[Path]:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no modules found under {SRC / package}"
    return files


def _imported_top_levels(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path``, wherever it appears."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _foreign_imports(package: str, allowed: set[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in _modules(package):
        extra = {
            name
            for name in _imported_top_levels(path)
            if name not in allowed and name not in sys.stdlib_module_names
        }
        if extra:
            found[str(path.relative_to(SRC))] = extra
    return found


def test_the_import_scanner_sees_imports() -> None:
    # Guards the two tests below against passing because nothing was collected.
    imports = _imported_top_levels(SRC / "domain" / "task.py")
    assert {"re", "uuid", "domain"} <= imports


def test_domain_imports_only_the_standard_library() -> None:
    assert _foreign_imports("domain", {"domain", "__future__"}) == {}


def test_application_imports_only_the_standard_library_and_the_domain() -> None:
    assert _foreign_imports("application", {"application", "domain", "__future__"}) == {}
