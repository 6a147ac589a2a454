"""Imports point one way: collectors, notifiers and dashboard use the core, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

C, D, S, N = ("partnerboard.collectors", "partnerboard.dashboard", "partnerboard.simulator",
              "partnerboard.notifiers")
W = "partnerboard.web"
TOP = {"partnerboard.cli", "partnerboard.server", "partnerboard.demo", "partnerboard.background"}
FORBIDDEN = {
    "partnerboard/core": {C, D, S, N, W, *TOP},
    # The HTTP layer stands on the core alone; the server composes it with the rest.
    "partnerboard/web": {C, D, S, N, *TOP},
    "collectors": {D, S, N, W, *TOP},
    "dashboard": {C, S, N, W, *TOP},
    "notifiers": {C, D, S, W, *TOP},
    "simulator": {"partnerboard"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


OWN = {"collectors": C, "dashboard": D, "simulator": S, "notifiers": N, "partnerboard/web": W}

# The core's rooms, and which of them each may import (partnerboard/core/__init__.py).
CORE = "partnerboard.core"
ROOMS = ("vocabulary", "config", "store", "access", "reconciliation", "metrics", "changes", "reports",
         "alerts", "review")
MAY_IMPORT = {
    "vocabulary": set(),
    "config": {"vocabulary"},
    "store": {"vocabulary", "config"},
    "access": {"vocabulary", "config", "store"},
    "reconciliation": {"vocabulary", "config", "store"},
    "metrics": {"vocabulary", "config", "store", "reconciliation"},
    "changes": {"vocabulary", "config", "store", "access", "metrics", "reconciliation"},
    "reports": {"vocabulary", "config", "store", "metrics", "changes", "reconciliation"},
    "alerts": {"vocabulary", "config", "store", "access", "metrics", "changes", "reconciliation"},
    "review": {"vocabulary", "config", "store", "access", "metrics", "changes", "reconciliation", "reports",
               "alerts"},
}


def test_the_core_rooms_import_one_way() -> None:
    """Each room of the core imports only the rooms below it: metrics never asks who is
    looking (access), the store knows nothing above it."""
    violations = []
    for room in ROOMS:
        allowed = MAY_IMPORT[room] | {room}
        files = list((REPO / "partnerboard" / "core" / room).rglob("*.py"))
        assert files, room
        for f in files:
            for name in _imports(f):
                if name == CORE or not name.startswith(CORE + "."):
                    if name == CORE:
                        violations.append(f"{f.relative_to(REPO)} imports the core as a whole")
                    continue
                target = name[len(CORE) + 1:].split(".")[0]
                if target not in allowed:
                    violations.append(f"{f.relative_to(REPO)} imports {name} ({room} may not use {target})")
    assert violations == []
    assert [p.name for p in (REPO / "partnerboard" / "core").glob("*.py")] == ["__init__.py"], \
        "every module of the core lives in a room"


def test_import_direction() -> None:
    violations = []
    for package, banned in FORBIDDEN.items():
        files = list((REPO / package).rglob("*.py"))
        assert files, package
        own = OWN.get(package)
        for f in files:
            for name in _imports(f):
                if own and (name == own or name.startswith(own + ".")):
                    continue  # a package imports itself
                if any(name == b or name.startswith(b + ".") for b in banned):
                    violations.append(f"{f.relative_to(REPO)} imports {name}")
    assert violations == []


def test_one_import_name() -> None:
    """Everything installs under partnerboard: no module imports the old top-level names."""
    old = ("collectors", "dashboard", "simulator", "notifiers")
    found = [f"{f.relative_to(REPO)} imports {name}"
             for folder in ("partnerboard", "collectors", "dashboard", "simulator", "notifiers", "tests",
                            "bench")
             for f in (REPO / folder).rglob("*.py")
             for name in _imports(f) if name.split(".")[0] in old]
    assert found == []


def test_every_package_folder_is_installed() -> None:
    """pyproject lists packages one by one (four are mapped from top-level folders): a new
    sub-package missing from the list would be absent from the wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    mapped = {"collectors": "partnerboard.collectors", "dashboard": "partnerboard.dashboard",
              "simulator": "partnerboard.simulator", "notifiers": "partnerboard.notifiers"}
    found = set()
    for init in REPO.glob("**/__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts[0] in mapped:
            found.add(".".join((mapped[rel.parts[0]], *rel.parts[1:])))
        elif rel.parts[0] == "partnerboard":
            found.add(".".join(rel.parts))
    assert found == listed
