"""The layering, read from the source with ast.

gateway/ and sinks/ have no import cycles, sinks/ never imports the store, only gateway/store/
spells queue states, and test modules share helpers through tests/support/ alone.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "sinks")
QUEUE_STATES = frozenset({"ready", "leased", "done"})
# A state written as an SQL literal inside a longer string, e.g. "... WHERE state = 'ready'".
SQL_STATE = re.compile(r"'(ready|leased|done)'")


@dataclass(frozen=True)
class Import:
    """One import statement's target module, where it is, and whether only type checkers see it."""

    target: str
    line: int
    type_checking: bool


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module under ``packages`` by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(body: list[ast.stmt], type_checking: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement, nested ones too (in functions, classes, branches), with whether it is type-checking only."""
    for statement in body:
        yield statement, type_checking
        if isinstance(statement, ast.If) and _is_type_checking(statement.test):
            yield from _statements(statement.body, True)
            yield from _statements(statement.orelse, type_checking)
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(statement, field, []):
                if isinstance(child, ast.stmt):
                    yield from _statements([child], type_checking)
                elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                    yield from _statements(child.body, type_checking)


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` names, or its nearest enclosing package in ``known``; None outside them."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """The modules in ``known`` that ``module`` imports, at module level and inside functions.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
    """
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for statement, type_checking in _statements(ast.parse(path.read_text(encoding="utf-8")).body, False):
        targets: list[str] = []
        if isinstance(statement, ast.Import):
            targets = [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = ".".join(package[:len(package) - statement.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in statement.names]
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module:
                found.append(Import(resolved, statement.lineno, type_checking))
    return found


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}, imports under TYPE_CHECKING left out."""
    known = modules(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        edges = graph.setdefault(module, {})
        for found in imports(module, path, known):
            if not found.type_checking:
                edges.setdefault(found.target, found.line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected group of modules (Tarjan, then a breadth-first search)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_shortest_cycle(graph, group) for group in sorted(groups)]


def _shortest_cycle(graph: dict[str, dict[str, int]], group: list[str]) -> list[str]:
    start = group[0]
    members = set(group)
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph[node]):
            if nxt == start:
                return paths[node] + [start]
            if nxt in members and nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    """``a -> b -> a`` with the line of each import."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle)]
    return " -> ".join(steps + [cycle[-1]])


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring constants of the module and its classes and functions."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def queue_state_literals(path: Path) -> list[tuple[int, str]]:
    """The string literals (docstrings aside) that spell a queue state, alone or as an SQL literal."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstrings(tree)
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and (node.value in QUEUE_STATES or SQL_STATE.search(node.value)))


# --- the checks themselves, on a package written for them


def test_the_checks_see_cycles_type_only_imports_and_local_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def later():\n    from .. import c\n")
    (package / "c.py").write_text("import pkg.a as a\nfrom pkg import missing\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
                                  "else:\n    import json\n")
    (package / "e.py").write_text('"""Says done."""\nSTATE = "done"\nSQL = "WHERE state = \'ready\'"\n')

    graph = import_graph(tmp_path, ("pkg",))

    assert graph["pkg.a"] == {"pkg.sub.b": 1}
    assert graph["pkg.sub.b"] == {"pkg.c": 2}
    assert graph["pkg.c"] == {"pkg.a": 1, "pkg": 2}
    assert graph["pkg.d"] == {}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    assert describe(cycles(graph)[0], graph) == \
        "pkg.a (line 1) -> pkg.sub.b (line 2) -> pkg.c (line 1) -> pkg.a"
    assert queue_state_literals(package / "e.py") == [(2, "done"), (3, "WHERE state = 'ready'")]


# --- the rules


def test_gateway_and_sinks_have_no_import_cycles() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 40, "the source was not found"

    found = [describe(cycle, graph) for cycle in cycles(graph)]

    assert not found, "import cycles (imports under TYPE_CHECKING aside):\n" + "\n".join(found)


def test_sinks_never_import_the_store() -> None:
    known = modules(ROOT)
    sinks = {name: path for name, path in known.items() if name.split(".")[0] == "sinks"}
    assert sinks, "no sinks found"

    offending = [f"{name} line {found.line}: {found.target}" for name, path in sinks.items()
                 for found in imports(name, path, known)
                 if found.target == "gateway.store" or found.target.startswith("gateway.store.")]

    assert not offending, "sinks/ is transport only; it imports the store:\n" + "\n".join(offending)


@pytest.mark.parametrize("module", sorted(name for name in modules(ROOT, ("gateway",))
                                          if name != "gateway.store" and not name.startswith("gateway.store.")))
def test_queue_states_are_spelled_only_in_the_store(module: str) -> None:
    path = modules(ROOT, ("gateway",))[module]

    found = queue_state_literals(path)

    assert not found, f"{path.relative_to(ROOT)} spells queue states; only gateway/store/ may:\n" + "\n".join(
        f"  line {line}: {value!r}" for line, value in found)


def test_test_modules_share_helpers_only_through_tests_support() -> None:
    known = modules(ROOT, ("tests", "bench"))

    def refused(importer: str, target: str) -> bool:
        if target == "tests.conftest" or target.split(".")[-1].startswith("test_"):
            return True  # a test module or conftest, imported as a module
        return target.startswith("tests.fixtures") and not importer.startswith("tests.fixtures")

    offending = [f"{name} line {found.line}: {found.target}" for name, path in known.items()
                 for found in imports(name, path, known) if refused(name, found.target)]

    assert not offending, "import helpers from tests.support instead:\n" + "\n".join(offending)
