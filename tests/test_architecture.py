"""The layout's rules: core never imports the GUI or the app, dependencies point app -> core,
and no module imports another that (directly or not) imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"chemlatent": ROOT / "core", "chemlatent.app": ROOT / "app"}
GUI = ("panel", "bokeh", "holoviews")


def _modules() -> dict[str, Path]:
    out = {}
    for name, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if name == "chemlatent" and parts[:1] == ["app"]:
                continue
            out[".".join([name, *parts])] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (function-level ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}


def test_core_imports_neither_the_gui_nor_the_app():
    for mod, path in _modules().items():
        if mod.startswith("chemlatent.app"):
            continue
        bad = [i for i in _imports(path) if i.split(".")[0] in GUI or i.startswith("chemlatent.app")]
        assert not bad, f"{mod} imports {bad}"


def test_no_import_cycles():
    graph = _graph()
    # a module importing its own package's __init__ is not a cycle worth reporting
    for m in graph:
        graph[m] = {i for i in graph[m] if not m.startswith(i + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_every_package_is_installed():
    """pyproject lists every package folder, so a non-editable install has them all."""
    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for name, base in PACKAGES.items():
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            if name == "chemlatent" and rel[:1] == ("app",):
                continue
            found.add(".".join([name, *rel]))
    assert found <= listed, sorted(found - listed)
