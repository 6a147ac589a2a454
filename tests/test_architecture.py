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


# Where each folder's modules are imported from: four top-level folders install under
# partnerboard (pyproject's package-dir), the rest are named by their path.
PACKAGE_OF = {"partnerboard": "partnerboard", "collectors": C, "dashboard": D, "simulator": S,
              "notifiers": N}


def _module_files() -> dict[str, Path]:
    """Every module of the project by its import name (a package by its ``__init__``)."""
    modules = {}
    for folder, package in PACKAGE_OF.items():
        for f in (REPO / folder).rglob("*.py"):
            parts = f.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = f
    return modules


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project's modules it imports, anywhere in it: at the top, inside a
    function (a late import still closes a circle, it only hides it until that call), under
    ``TYPE_CHECKING``, relative or absolute. ``from package import name`` points at the
    module ``package.name`` when there is one, else at the package itself."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for a in node.names:
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base))
        graph[module] = {m for m in found if m and m != module}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module: each is a set of
    modules that import each other, directly or round a loop (iterative, no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_the_circle_finder_finds_a_circle_and_only_a_circle() -> None:
    """The finder itself: a loop of three and a pair are found, a diamond is not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"},
             "top": {"left", "right"}, "left": {"bottom"}, "right": {"bottom"}, "bottom": set()}
    assert _circles(graph) == [["a", "b", "c"], ["d", "e"]]


def test_the_import_graph_sees_late_relative_and_type_checking_imports(tmp_path) -> None:
    """The graph is only as good as what it reads: a late import inside a function, a
    relative import, one under ``TYPE_CHECKING`` and ``from package import module`` are
    each an edge to the module they name; a name imported from a module is an edge to
    that module, and what is not ours is no edge at all."""
    files = {"pkg": "", "pkg.a": "import json\nfrom pkg.b import thing\n",
             "pkg.b": "def f():\n    from pkg import c\n",
             "pkg.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.d import D\n",
             "pkg.sub": "from . import d\n", "pkg.sub.d": "from ..a import x\nimport pkg.b.nothing\n"}
    modules = {}
    for name, text in files.items():
        is_package = name == "pkg" or name == "pkg.sub"
        path = tmp_path.joinpath(*name.split("."), "__init__.py") if is_package else \
            tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        modules[name] = path
    assert _import_graph(modules) == {
        "pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.sub.d"},
        "pkg.sub": {"pkg.sub.d"}, "pkg.sub.d": {"pkg.a", "pkg.b"}}
    assert _circles(_import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d"]]


def test_no_import_circles() -> None:
    """No module imports itself round a loop, however late: a circle works only while
    one side imports the other inside a function or after its own definitions, and it
    breaks the day someone moves an import to the top. Each circle is named, with the
    modules in it."""
    circles = _circles(_import_graph(_module_files()))
    assert circles == [], "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)
