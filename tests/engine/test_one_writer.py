"""Static checks of the engine's structure, read from the source with ``ast`` (nothing is imported).

* **One writer of process rows.**  Only ``plait/storage/**`` (where the SQL
  lives) and ``plait/engine/lifecycle.py`` (the one writer, with the
  transition table and the fencing) may call a backend method that writes a
  row of ``processes``, ``process_waits`` or ``process_checkpoints``.  Any
  other module that does bypasses the transition table and the lease check.
  Calls through the lifecycle module (``lifecycle.take_lease(...)``) share
  some of these names and are of course allowed.
* **The process classes do not import the runner** at module level:
  ``process.py``, ``workchain.py``, ``calcjob.py``, ``parser.py`` and
  ``process_function.py`` describe what a process is; the runner runs them
  and imports them, not the other way round (imports inside functions and
  under ``if TYPE_CHECKING:`` are fine).
* **No import cycle among the modules of plait.engine** at module level.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from ast_source import parse_source

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "plait"
ENGINE = PACKAGE / "engine"

#: backend methods that write process rows, process waits or checkpoints
PROCESS_WRITERS = frozenset(
    {
        "insert_process",
        "update_process",
        "update_process_if_unheld",
        "update_held_processes",
        "take_lease",
        "release_leases",
        "renew_leases",
        "claim_runnable",
        "park",
        "reserve_job_slot",
        "add_checkpoint",
        "delete_checkpoints",
        "release_waits_on",
        "delete_waits_of",
        "release_leases_of_dead_worker",
    }
)

#: tables whose rows only plait.storage writes (SQL built elsewhere would bypass the lifecycle)
PROCESS_TABLES = frozenset({"processes", "process_waits", "process_checkpoints"})

LIFECYCLE = "plait.engine.lifecycle"
RUNNER = "plait.engine.runner"

#: engine modules that describe processes: the runner imports them, never the other way round
MUST_NOT_IMPORT_RUNNER = ("process", "workchain", "calcjob", "parser", "process_function")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(SRC.parent).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _may_write_processes(path: Path) -> bool:
    rel = path.relative_to(PACKAGE).as_posix()
    return rel.startswith("storage/") or rel == "engine/lifecycle.py"


def _parse(path: Path) -> ast.Module:
    return parse_source(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _attribute_chain(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, None for anything else (calls, subscripts)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _lifecycle_aliases(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Names (or dotted chains) under which this file refers to the lifecycle module."""
    aliases = {LIFECYCLE}  # ``import plait.engine.lifecycle`` binds the chain itself
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == LIFECYCLE and alias.asname:
                    aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(module, is_package, node)
            for alias in node.names:
                if f"{source}.{alias.name}" == LIFECYCLE:
                    aliases.add(alias.asname or alias.name)
    return aliases


def _process_writes(path: Path, tree: ast.Module | None = None) -> Iterator[str]:
    """``file:line: what`` for each use of a process-row writer outside the lifecycle module."""
    tree = tree if tree is not None else _parse(path)
    module = _module_name(path)
    aliases = _lifecycle_aliases(tree, module, _is_package(path))
    rel = _rel(path)
    for node in ast.walk(tree):
        # a call, or the bound method handed on (functools.partial, asyncio.to_thread, call_db)
        if isinstance(node, ast.Attribute) and node.attr in PROCESS_WRITERS:
            receiver = _attribute_chain(node.value)
            if receiver in aliases:
                continue
            shown = receiver if receiver is not None else ast.unparse(node.value)
            yield f"{rel}:{node.lineno}: {shown}.{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in PROCESS_WRITERS
        ):
            yield f"{rel}:{node.lineno}: getattr(..., {node.args[1].value!r})"
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(module, _is_package(path), node)
            if source.startswith("plait.storage"):
                for alias in node.names:
                    if alias.name in PROCESS_WRITERS:
                        yield f"{rel}:{node.lineno}: from {source} import {alias.name}"
    # reading the process tables is anyone's right (the query builder joins them); a module that
    # imports one of them may not also build a write statement
    tables = _imported_process_tables(tree, module, _is_package(path))
    if tables:
        for line, what in _write_statements(tree, tables):
            yield f"{rel}:{line}: {what} in a module that imports {', '.join(sorted(tables))}"


def _imported_process_tables(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if _resolve_from(module, is_package, node) == "plait.storage.schema":
                names.update(a.asname or a.name for a in node.names if a.name in PROCESS_TABLES)
    return names


WRITE_STATEMENTS = {"insert", "update", "delete"}


def _write_statements(tree: ast.Module, tables: set[str]) -> Iterator[tuple[int, str]]:
    """Each ``insert``/``update``/``delete`` that SQLAlchemy gives, and each ``table.insert()`` etc."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            for alias in node.names:
                if alias.name in WRITE_STATEMENTS:
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Attribute) and node.attr in WRITE_STATEMENTS:
            receiver = _attribute_chain(node.value)
            if receiver in tables or receiver in ("sa", "sqlalchemy"):
                yield node.lineno, f"{receiver}.{node.attr}"


def test_only_storage_and_lifecycle_write_process_rows() -> None:
    scanned = [path for path in _sources() if not _may_write_processes(path)]
    assert len(scanned) > 20, "the scan found too few modules: is SRC right?"
    offenders = [line for path in scanned for line in _process_writes(path)]
    assert not offenders, (
        "only plait/storage/** and plait/engine/lifecycle.py may write process rows, waits or "
        "checkpoints; go through plait.engine.lifecycle instead:\n  " + "\n  ".join(offenders)
    )


def test_the_scan_sees_a_direct_write() -> None:
    """The checker itself: it flags direct backend writes and lets lifecycle calls through."""
    source = (
        "from plait.engine import lifecycle as lc\n"
        "import functools\n"
        "import plait.engine.lifecycle\n"
        "def f(backend, pk):\n"
        "    lc.take_lease(pk, 'me', 1.0)\n"
        "    plait.engine.lifecycle.park(None, 'me', [], '')\n"
        "    backend.update_process(pk, paused=True)\n"
        "    functools.partial(_backend().park, pk)\n"
        "    getattr(backend, 'add_checkpoint')\n"
        "from plait.storage.schema import processes\n"
        "def g(conn):\n"
        "    conn.execute(processes.update().values(paused=True))\n"
    )
    probe = ENGINE / "_probe.py"  # only named: the source above is parsed, nothing is written
    found = [line.split(": ", 1)[1] for line in _process_writes(probe, parse_source(source))]
    assert sorted(found) == sorted(
        [
            "backend.update_process",
            "_backend().park",
            "getattr(..., 'add_checkpoint')",
            "processes.update in a module that imports processes",
        ]
    ), found
    # reading a process table (a query) is allowed; building a write statement beside it is not
    reader = (
        "from plait.storage.schema import processes\nfrom sqlalchemy import select\nq = select(processes)\n"
    )
    assert list(_process_writes(probe, parse_source(reader))) == []
    writer = reader + "from sqlalchemy import update\n"
    assert [line.split(": ", 1)[1] for line in _process_writes(probe, parse_source(writer))] == [
        "from sqlalchemy import update in a module that imports processes"
    ]


# -- module-level imports among plait.engine ------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return _attribute_chain(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: not in functions, not under ``if TYPE_CHECKING``."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.ClassDef | ast.With | ast.For | ast.While):
            pending.extend(node.body)
            pending.extend(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            pending.extend(node.body)
            for handler in node.handlers:
                pending.extend(handler.body)
            pending.extend(node.orelse)
            pending.extend(node.finalbody)


def _engine_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ENGINE.glob("*.py"))}


def _imported_modules(path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """``(module, line)`` for each module of ``known`` that ``path`` imports at module level.

    ``from plait.engine import lifecycle`` imports the submodule ``plait.engine.lifecycle``;
    ``from plait.engine import Runner`` (a name, not a submodule) imports the package itself.
    """
    module = _module_name(path)
    for node in _module_level_imports(_parse(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            source = _resolve_from(module, _is_package(path), node)
            names = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        for name in names:
            if name in known and name != module:
                yield name, node.lineno


def _import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported engine module: line}}`` of the module-level imports inside plait.engine."""
    modules = _engine_modules()
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in _imported_modules(path, known):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def _short(module: str) -> str:
    return module.removeprefix("plait.engine.") if module != "plait.engine" else "__init__"


def test_module_level_importers_of_the_runner_are_known() -> None:
    """Which engine modules import the runner at module level (the package, control and launch need it)."""
    graph = _import_graph()
    importers = sorted(_short(name) for name, edges in graph.items() if RUNNER in edges)
    # the package re-exports Runner; launch and control drive runners
    assert set(importers) <= {"__init__", "launch", "control"}, importers


@pytest.mark.parametrize("name", MUST_NOT_IMPORT_RUNNER)
def test_process_classes_do_not_import_the_runner(name: str) -> None:
    graph = _import_graph()
    module = f"plait.engine.{name}"
    assert module in graph, f"{module} is gone: update MUST_NOT_IMPORT_RUNNER"
    path = _engine_modules()[module]
    direct = graph[module].get(RUNNER)
    assert direct is None, f"{_rel(path)}:{direct} imports plait.engine.runner at module level"
    # nor through another engine module (the package __init__ is not followed: it is imported first)
    chain = _path_to(graph, module, RUNNER, skip={"plait.engine"})
    assert chain is None, f"{_rel(path)} imports plait.engine.runner at module level through " + " -> ".join(
        f"{_short(a)}:{graph[a][b]}" for a, b in itertools.pairwise(chain)
    )


def _path_to(graph: dict[str, dict[str, int]], start: str, goal: str, skip: set[str]) -> list[str] | None:
    parents: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in graph.get(node, {}):
            if target in parents or target in skip:
                continue
            parents[target] = node
            if target == goal:
                path = [target]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])  # type: ignore[arg-type]
                return path[::-1]
            queue.append(target)
    return None


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_engine() -> None:
    graph = _import_graph()
    assert len(graph) > 10, "the scan found too few engine modules"
    cycles = _cycles(graph)
    lines = []
    for component in cycles:
        members = set(component)
        edges = [
            f"{_short(a)} -> {_short(b)} ({_rel(_engine_modules()[a])}:{line})"
            for a in component
            for b, line in sorted(graph[a].items())
            if b in members
        ]
        lines.append(", ".join(_short(m) for m in component) + ":\n    " + "\n    ".join(edges))
    assert not cycles, "module-level import cycles among plait.engine modules:\n  " + "\n  ".join(lines)
