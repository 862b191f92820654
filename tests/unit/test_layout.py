"""The package structure the README's Layout section describes (issue 12): the container builder imports neither
the Slurm plugin nor the CLI that use it, and no module imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "hpcctl"
ADAPTERS = ("hpcctl.plugin", "hpcctl.cli")  # thin adapters over hpcctl.container


def module_imports() -> dict[str, set[str]]:
    """{module: hpcctl modules it imports at load time} (imports inside functions and TYPE_CHECKING excluded)."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpcctl"):
                deps |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("hpcctl")}
        found[name] = deps
    return {m: {d for d in deps if d in found and d != m} for m, deps in found.items()}


def test_the_builder_does_not_import_its_adapters():
    upward = {(m, d) for m, deps in module_imports().items() if m.startswith("hpcctl.container")
              for d in deps if d.startswith(ADAPTERS)}
    assert upward == set()


def test_no_import_cycles():
    graph, state, cycles = module_imports(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
