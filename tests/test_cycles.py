"""No import cycles: within each package under runner/ and schemas/, no module imports (at module level or inside
a function, relative imports resolved) a module that imports it back, directly or through others. A cycle is
reported by the innermost package that holds all of its modules, so each package answers for its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

ROOTS = ("runner", "schemas")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for r in ROOTS for p in sorted((ROOT / r).rglob("*.py"))}
PACKAGES = sorted(name for name, path in MODULES.items() if path.name == "__init__.py")


def known(name: str) -> str | None:
    """The module `name` is, or is an attribute of (the longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in MODULES:
            return prefix
    return None


def imports_of(module: str) -> set[str]:
    """The known modules `module` imports anywhere in its file; `from P import m` of a submodule m counts as an
    import of P.m only (P, its parent, is imported first either way)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(known(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else known(source))
    return found - {None, module}


def within(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def components(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def a_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One shortest cycle through the component's first module, as the modules along it."""
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v] & set(component)):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")


def cycles_in(package: str) -> list[str]:
    """Import cycles among the package's modules (its subpackages' included) that no single subpackage holds."""
    nodes = [m for m in MODULES if within(package, m)]
    edges = {m: {i for i in imports_of(m) if within(package, i)} for m in nodes}
    depth = len(package.split("."))
    out = []
    for component in components(nodes, edges):
        children = {".".join(m.split(".")[: depth + 1]) for m in component}
        if len(children) > 1:  # else the subpackage's own test reports it
            out.append(" -> ".join(a_cycle(component, edges)))
    return out


def test_the_packages_are_found():
    assert {"runner", "runner.data", "runner.plan", "schemas"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    assert cycles_in(package) == []


def test_a_cycle_through_a_function_level_import_is_found(monkeypatch, tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import f\n",
        "pkg/b.py": "def f():\n    from pkg.sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from .. import a\n",
        "pkg/sub/d.py": "from . import e\n",
        "pkg/sub/e.py": "def g():\n    from .d import x\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "MODULES", {module_name(tmp_path / n): tmp_path / n for n in files})
    assert cycles_in("pkg") == ["pkg.a -> pkg.b -> pkg.sub.c -> pkg.a"]
    assert cycles_in("pkg.sub") == ["pkg.sub.d -> pkg.sub.e -> pkg.sub.d"]
