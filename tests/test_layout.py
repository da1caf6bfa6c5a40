"""The package's modules import one another in one direction only: no cycles, nothing imports tap.

Type-only imports count too: a cycle hidden behind ``TYPE_CHECKING`` is still two modules that
each need the other to be understood.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tap_wechat_share"


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "tap_wechat_share."
            ):
                names.add(node.module.split(".")[1])  # type: ignore[union-attr]
            elif isinstance(node, ast.ImportFrom) and node.module == "tap_wechat_share":
                names.update(alias.name for alias in node.names)
        graph[path.stem] = names - {path.stem}
    return graph


def test_no_module_imports_tap() -> None:
    assert [module for module, names in imports().items() if "tap" in names] == []


def test_the_imports_have_no_cycle() -> None:
    graph = imports()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for name in graph.get(module, set()):
            visit(name, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
