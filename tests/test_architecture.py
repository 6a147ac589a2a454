"""Imports point one way: collectors and dashboard use the core, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN = {
    "partnerboard/core": {"collectors", "dashboard", "simulator", "partnerboard.cli",
                          "partnerboard.server"},
    "collectors": {"dashboard", "simulator", "partnerboard.cli", "partnerboard.server"},
    "dashboard": {"collectors", "simulator", "partnerboard.cli", "partnerboard.server"},
    "simulator": {"partnerboard", "collectors", "dashboard"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_import_direction() -> None:
    violations = []
    for package, banned in FORBIDDEN.items():
        files = list((REPO / package).rglob("*.py"))
        assert files, package
        for f in files:
            for name in _imports(f):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    violations.append(f"{f.relative_to(REPO)} imports {name}")
    assert violations == []
