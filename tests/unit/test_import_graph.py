"""The project's modules import each other without a circle; the settings are a leaf.

A circle (the loader importing the registry, which imports the vendors, which import the
loader) works only as long as every module in it happens to be imported in the right order.
The static check reads every module's imports, those inside functions included: an import
deferred into a function is still a dependency. Imports under `if TYPE_CHECKING:` are left
out, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "adapters"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(name: str, path: Path, nodes: Iterable[ast.stmt]) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _imported_names(name, path, node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                module = f"{package}.{node.module}" if node.module else package
            else:
                module = node.module or ""
            yield module
            # `from adapters.moco import webhooks` imports the submodule.
            yield from (f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _imported_names(name, path, [child])
            elif isinstance(child, ast.ExceptHandler | ast.match_case):
                yield from _imported_names(name, path, child.body)


def _project_imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for imported in _imported_names(name, path, tree.body):
        # The longest prefix that is a module of the project (`a.b.Name` -> `a.b`).
        while imported and imported not in MODULES:
            imported = imported.rpartition(".")[0]
        if imported and imported != name:
            found.add(imported)
    return found


GRAPH = {name: _project_imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_the_old_circle() -> None:
    # The circle this project had: loader -> registry -> vendor -> loader.
    graph = {
        "adapters.config": {"adapters.registry"},
        "adapters.registry": {"adapters.moco"},
        "adapters.moco": {"adapters.config", "adapters.core.vendor"},
        "adapters.core.vendor": set(),
    }
    assert _cycles(graph) == [["adapters.config", "adapters.moco", "adapters.registry"]]


def test_the_graph_sees_imports_inside_functions() -> None:
    source = (
        "def f():\n    try:\n        pass\n    except ImportError:\n"
        "        from adapters.registry import VENDORS\n"
    )
    path = PACKAGE / "config.py"
    names = set(_imported_names("adapters.config", path, ast.parse(source).body))
    assert "adapters.registry" in names
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import adapters.registry\n"
    assert "adapters.registry" not in set(
        _imported_names("adapters.config", path, ast.parse(guarded).body)
    )


def test_settings_import_nothing_of_the_project_but_the_secret_type() -> None:
    assert GRAPH["adapters.settings"] == {"adapters.core.secret"}


@pytest.mark.parametrize("loader", ["adapters.config", "adapters.validation"])
def test_the_loader_reaches_no_vendor_and_no_registry(loader: str) -> None:
    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in GRAPH[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reached = reachable(loader)
    assert "adapters.registry" not in reached
    assert not {m for m in reached if m.startswith(("adapters.moco", "adapters.mobilitywork"))}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("adapters.settings", {"adapters", "adapters.core", "adapters.core.secret"}),
        (
            "adapters.config",
            {
                "adapters",
                "adapters.config",
                "adapters.core",
                "adapters.core.secret",
                "adapters.settings",
                "adapters.validation",
            },
        ),
    ],
)
def test_importing_alone_loads_no_vendor(module: str, allowed: set[str]) -> None:
    # A fresh interpreter: this test process has imported every vendor already.
    code = (
        f"import sys, {module}\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] == 'adapters')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    loaded = set(result.stdout.split())
    assert loaded <= {*allowed, module}, sorted(loaded - allowed)
