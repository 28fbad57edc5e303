"""The layout is the architecture: rules by folder over every module's imports (parsed, not run).

A module belongs to the folder it sits in (``agents/policy``, ``bus``, ``""`` for the top level);
the rule of its folder is the one of the longest folder prefix in :data:`IMPORTS`. A new module
is held to its folder's rules the day it is written, with no list of modules to keep up to date;
a new folder fails :func:`test_every_folder_has_a_rule` until it is given one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import swarmlog

SRC = Path(swarmlog.__file__).parent

BASE = {""}
"""The top level: config, errors, files (and the public API, ``__init__``, ruled apart)."""

# Which swarmlog folders each folder may import (its own sub-folders always included).
IMPORTS: dict[str, set[str]] = {
    "": BASE,
    "schemas": {"schemas", *BASE},
    "bus": {"bus", "schemas", *BASE},
    "projections": {"projections", "bus", "schemas", *BASE},
    "agents": {"agents", "projections", "bus", "schemas", *BASE},
    # policy may name the agent API's TaskError; anything else of agents does I/O, which
    # test_pure_folders_do_no_io refuses
    "agents/policy": {"agents", "projections", "bus", "schemas", *BASE},
    # an agent process reads its own key files and finds the running server
    "agents/host": {"agents", "control", "projections", "bus", "schemas", *BASE},
    "control": {"control", "agents", "projections", "bus", "schemas", *BASE},
    "rendering": {"rendering", "schemas", *BASE},
    # traces and metrics derived from the log and the projections (OpenTelemetry, Prometheus)
    "observability": {"observability", "control", "projections", "bus", "schemas", *BASE},
    # the web console: the operator's views and actions, over HTTP
    "console": {
        "console",
        "observability",
        "control",
        "agents",
        "projections",
        "bus",
        "schemas",
        "rendering",
        *BASE,
    },
    "harness": {
        "harness",
        "control",
        "agents",
        "projections",
        "bus",
        "schemas",
        "rendering",
        *BASE,
    },
    "cli": {
        "cli",
        "console",
        "observability",
        "harness",
        "control",
        "agents",
        "projections",
        "bus",
        "schemas",
        "rendering",
        *BASE,
    },
}
PUBLIC_API_MAY_NOT_IMPORT = {"cli", "harness"}
ENTRY_POINT = "swarmlog.__main__"
"""``python -m swarmlog``: the one module of the top level that runs the CLI."""

# Folders only the folders named here (and the tests) may import.
IMPORTED_ONLY_BY: dict[str, set[str]] = {
    "harness": {"cli"},  # sim, bench, demo are tools: nothing in the product needs them
    # the process shell sits above control, not beside agents; the public API names bring_up
    "agents/host": {"cli", "harness", ""},
    "cli": set(),
}

# Which folders may import a library (its top-level name): the adapters, and the tools that
# measure them. Anything not named here may be imported anywhere not pure.
LIBRARIES: dict[str, set[str]] = {
    "nats": {"bus", "projections", "harness"},
    "nkeys": {"bus"},
    "duckdb": {"projections", "harness"},
    "pyarrow": {"projections"},
    "openai": {"agents"},  # the model adapter (agents/llm/openai_chat.py)
    "mcp": {"agents"},  # the MCP client (agents/tools/mcp.py), imported only when a server starts
    "subprocess": {"bus", "control", "harness"},
    "socket": {"bus"},
    "click": {"cli"},
    "opentelemetry": {"observability"},  # the OTLP export (observability/otlp.py)
    "prometheus_client": {"observability"},
    "uvicorn": {"control"},  # the one HTTP server shell (control/http.py)
    "starlette": {"console", "observability", "control"},
}

PURE_FOLDERS = {"schemas", "agents/policy"}
"""Pure: nothing a module here imports, directly or through other swarmlog modules, does I/O or
reads clocks and randomness (those are passed in). Elsewhere, a module whose docstring says it is
pure in its first paragraph (``"(pure)"``, ``"(pure part)"``, ...) is held to the same rule."""
IMPURE = {
    "nats",
    "duckdb",
    "asyncio",
    "time",
    "random",
    "secrets",
    "uuid",
    "os",
    "subprocess",
    "socket",
    "signal",
    "threading",
    "concurrent",
    "shutil",
    "tempfile",
    "fcntl",
    "ctypes",
    "httpx",
    "openai",
    "click",
    "rich",
}


@dataclass(frozen=True)
class Module:
    name: str
    """Dotted: ``swarmlog.agents.policy.retry``."""
    folder: str
    """Relative to the package: ``agents/policy``; ``""`` for the top level."""
    swarmlog: dict[str, int]
    """The swarmlog modules it imports, with the line of the first import."""
    libraries: dict[str, int]
    """The top-level names of the other modules it imports, with the line."""
    says_pure: bool
    """Its docstring's first paragraph says "(pure"."""


def _module_names() -> set[str]:
    names = set()
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.add(".".join(parts))
    return names


NAMES = _module_names()


def _resolve(module: str, names: list[str]) -> list[str]:
    """``from module import a, b``: the modules named (``module.a`` when it is one), else
    ``module`` itself."""
    found = [f"{module}.{n}" for n in names if f"{module}.{n}" in NAMES]
    return found if len(found) == len(names) else [*found, module]


def _parse(path: Path) -> Module:
    rel = path.relative_to(SRC)
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    package = ".".join(parts[:-1])
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    own: dict[str, int] = {}
    libraries: dict[str, int] = {}

    def add(module: str, line: int) -> None:
        if module == "swarmlog" or module.startswith("swarmlog."):
            own.setdefault(module, line)
        else:
            libraries.setdefault(module.split(".")[0], line)

    tree = ast.parse(path.read_text(), str(path))
    summary = (ast.get_docstring(tree) or "").split("\n\n")[0]
    # Imports under ``if TYPE_CHECKING:`` never run: names for annotations, not dependencies.
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for statement in node.body
        for inner in ast.walk(statement)
    }
    # ast.walk: imports inside functions count too (a lazy import is still a dependency)
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "__future__":
                continue
            for target in _resolve(module, [a.name for a in node.names]):
                add(target, node.lineno)
    own.pop(name, None)
    folder = rel.parent.as_posix().removeprefix(".")
    return Module(name, folder, own, libraries, "(pure" in summary and path.stem != "__init__")


MODULES = {m.name: m for m in (_parse(p) for p in sorted(SRC.rglob("*.py")))}


def _folder_of(name: str) -> str:
    """The folder a swarmlog module lives in (a package: its own folder)."""
    module = MODULES[name]
    return module.folder


def _rule(folder: str, rules: dict[str, set[str]]) -> str | None:
    """The longest folder prefix of ``folder`` that has a rule."""
    best = None
    for key in rules:
        matches = key == "" or folder == key or folder.startswith(key + "/")
        if matches and (best is None or len(key) > len(best)):
            best = key
    return best


def _within(folder: str, allowed: set[str]) -> bool:
    return any(
        (a == "" and folder == "") or (a and (folder == a or folder.startswith(a + "/")))
        for a in allowed
    )


def _where(module: Module, line: int) -> str:
    return f"{module.name.replace('.', '/')}.py:{line}"


def test_every_folder_has_a_rule_and_a_documented_package() -> None:
    for folder in {m.folder for m in MODULES.values()}:
        key = _rule(folder, IMPORTS)
        assert key is not None, folder
        assert folder == key or key != "", f"no rule for {folder}/"
        init = SRC / folder / "__init__.py"
        assert init.is_file(), f"{folder or '.'}/ has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} says nothing"


def test_each_folder_imports_only_the_folders_it_may() -> None:
    bad = []
    for module in MODULES.values():
        if module.name in {"swarmlog", ENTRY_POINT}:  # the public API: ruled below
            continue
        allowed = IMPORTS[_rule(module.folder, IMPORTS) or ""]
        for target, line in module.swarmlog.items():
            if target not in MODULES:
                continue
            if not _within(_folder_of(target), allowed | {module.folder}):
                bad.append(f"{_where(module, line)} imports {target}")
    assert not bad, "imports across the layers:\n" + "\n".join(bad)


def test_the_public_api_exports_no_tools() -> None:
    api = MODULES["swarmlog"]
    for target, line in api.swarmlog.items():
        folder = _folder_of(target) if target in MODULES else ""
        assert not _within(folder, PUBLIC_API_MAY_NOT_IMPORT), f"__init__.py:{line}: {target}"


def test_nothing_but_the_cli_imports_the_harness_nor_the_agent_process_shell() -> None:
    bad = []
    for module in MODULES.values():
        for target, line in module.swarmlog.items():
            if target not in MODULES or module.name == ENTRY_POINT:
                continue
            for folder, importers in IMPORTED_ONLY_BY.items():
                if (
                    _within(_folder_of(target), {folder})
                    and not _within(module.folder, {folder})
                    and not _within(module.folder, importers)
                ):
                    bad.append(f"{_where(module, line)} imports {target} (only {importers})")
    assert not bad, "\n".join(bad)


def test_libraries_only_where_they_belong() -> None:
    bad = []
    for module in MODULES.values():
        for library, line in module.libraries.items():
            allowed = LIBRARIES.get(library)
            if allowed is not None and not _within(module.folder, allowed):
                bad.append(f"{_where(module, line)} imports {library}")
    assert not bad, "\n".join(bad)


def _closure(name: str) -> Iterator[tuple[list[str], Module]]:
    """Every swarmlog module ``name`` reaches through its imports, with the path there."""
    seen = {name}
    todo = [[name]]
    while todo:
        path = todo.pop()
        module = MODULES[path[-1]]
        yield path, module
        for target in module.swarmlog:
            if target in MODULES and target not in seen:
                seen.add(target)
                todo.append([*path, target])


def test_pure_modules_do_no_io_not_even_through_what_they_import() -> None:
    bad = []
    for module in MODULES.values():
        if not (module.says_pure or _within(module.folder, PURE_FOLDERS)):
            continue
        for path, reached in _closure(module.name):
            for library in sorted(set(reached.libraries) & IMPURE):
                line = reached.libraries[library]
                bad.append(f"{' -> '.join(path)} imports {library} ({_where(reached, line)})")
    assert not bad, "pure modules reaching I/O:\n" + "\n".join(bad)


def test_schemas_import_no_other_swarmlog_package() -> None:
    for module in MODULES.values():
        if not _within(module.folder, {"schemas"}):
            continue
        for target, line in module.swarmlog.items():
            assert target.startswith("swarmlog.schemas") or target == "swarmlog.errors", (
                f"{_where(module, line)}: {target}"
            )


def _cycle() -> list[str] | None:
    """One import cycle among the modules (iterative depth-first search), or ``None``."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(MODULES, white)
    for root in sorted(MODULES):
        if colour[root] != white:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(MODULES[root].swarmlog)))]
        colour[root] = grey
        while stack:
            node, edges = stack[-1]
            for target in edges:
                if target not in MODULES:
                    continue
                # a package's __init__ that re-exports is not part of a circle through itself
                if node.startswith(target + "."):
                    continue
                if colour[target] == grey:
                    on_stack = [n for n, _ in stack]
                    return [*on_stack[on_stack.index(target) :], target]
                if colour[target] == white:
                    colour[target] = grey
                    stack.append((target, iter(sorted(MODULES[target].swarmlog))))
                    break
            else:
                colour[node] = black
                stack.pop()
    return None


def test_no_import_circle() -> None:
    cycle = _cycle()
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("folder", "target", "ok"),
    [
        ("agents/policy", "bus", True),
        ("agents/policy", "control", False),
        ("agents/roles", "agents", True),
        ("agents", "control", False),
        ("agents/host", "control", True),
        ("bus", "projections", False),
        ("schemas", "", True),
        ("control", "harness", False),
        ("cli", "harness", True),
    ],
)
def test_the_rules_read_as_meant(folder: str, target: str, ok: bool) -> None:
    allowed = IMPORTS[_rule(folder, IMPORTS) or ""] | {folder}
    assert _within(target, allowed) is ok
