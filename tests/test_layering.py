"""The shipped packages' import graph: no cycles, and the pure core (rules/) imports none of the adapters.

Every import statement counts, wherever it stands (module level, ``if TYPE_CHECKING``, inside a function):
an import deferred into a function still makes the two modules depend on each other, it only hides the cycle.
The graph is read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "rules", "fhir_mappings", "dicom_listener")
ADAPTERS = ("service", "fhir_mappings", "dicom_listener", "bench", "tests")
"""What rules/ must not import (style.md "Layering": adapters point inward)."""


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports: ``import a.b`` gives ``a.b``; ``from a import b`` gives ``a.b``
    (the caller keeps it when it is a module, else falls back to ``a``)."""
    names = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of our packages it imports (a name that is not a module maps to its package)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_import_graph_of_our_packages_has_no_cycle():
    graph = import_graph()
    assert {"service.cli", "service.api.app", "rules.engine", "fhir_mappings.outbound"} <= graph.keys()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_deferred_and_type_checking_imports_count(tmp_path):
    source = tmp_path / "outbound.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import codes\n"
        "if TYPE_CHECKING:\n    from fhir_mappings.prefill import render_prefill\n"
        "def later():\n    import service.api.app\n"
    )
    names = _imported_names("fhir_mappings.outbound", source)
    assert {"fhir_mappings.codes", "fhir_mappings.prefill.render_prefill", "service.api.app"} <= names
    assert find_cycle({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_rules_imports_none_of_the_adapters():
    outside = {
        f"{module} imports {target}"
        for module, path in _modules().items()
        if module.split(".")[0] == "rules"
        for target in _imported_names(module, path)
        if target.split(".")[0] in ADAPTERS
    }
    assert not outside, sorted(outside)
