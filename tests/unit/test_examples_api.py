"""Every example imports from swarmlog only what ``swarmlog`` exports at the top level: an agent
author never reaches into the packages (which are free to change)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import swarmlog

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OWN_LIBRARIES = {"msgspec", "duckdb"}
"""Libraries an example uses for its own work (etl loads a DuckDB warehouse), not swarmlog's."""


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_examples_import_only_public_swarmlog_names() -> None:
    files = sorted(EXAMPLES.rglob("*.py"))
    assert len(files) >= 5
    for path in files:
        for module, names in _imports(path):
            root = module.split(".")[0]
            where = f"{path.relative_to(EXAMPLES)} imports {module}"
            if root == "swarmlog":
                assert module == "swarmlog", f"{where}: import from swarmlog itself"
                assert set(names) <= set(swarmlog.__all__), f"{where}: {names}"
            else:
                assert root in sys.stdlib_module_names | OWN_LIBRARIES | {"examples"}, where
