"""``sse.__all__`` is the app's API, and the ``permissions`` app is built on
it alone: what a project's own app on top of ``sse`` could use too."""

from __future__ import annotations

import ast
from pathlib import Path

import sse

PERMISSIONS = Path(__file__).resolve().parent.parent / "permissions"


def _imports_of_sse(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of ``sse`` or its modules."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sse" or node.module.startswith("sse."):
                found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sse" or alias.name.startswith("sse."):
                    found.append((node.lineno, alias.name, []))
    return found


def test_every_exported_name_resolves() -> None:
    missing = [name for name in sse.__all__ if getattr(sse, name, None) is None]
    assert missing == []


def test_the_permissions_app_uses_only_the_exported_api() -> None:
    outside = []
    files = sorted(PERMISSIONS.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for line, module, names in _imports_of_sse(path):
            where = f"{path.relative_to(PERMISSIONS.parent)}:{line}"
            if module != "sse":
                outside.append(f"{where} imports {module}")
            outside.extend(f"{where} imports sse.{n}" for n in names if n not in sse.__all__)
    assert outside == []
