"""The package's promises: cheap to import, a lower layer, plugins found by entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import plait.transports
from ast_source import parse_source
from plait.transports import BlockingTransport, Transport, get_transport_class, load_transport_plugins
from plait.transports.local import LocalTransport
from plait.transports.ssh import SshTransport
from plait.transports.ssh_blocking import BlockingSshTransport

PACKAGE = Path(plait.transports.__file__).parent


def test_import_loads_no_ssh_library() -> None:
    code = (
        "import sys, plait.transports; "
        "print([m for m in ('asyncssh', 'paramiko', 'pytest', 'plait.transports.ssh', "
        "'plait.transports.ssh_blocking', 'importlib.metadata') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


#: the one plugin lookup by name; it imports nothing of plait itself (checked below), so the
#: transports still stand alone with it
FOUNDATION = "plait.plugins.entry_points"


#: run by a fresh interpreter: CPython 3.11.7 failed ast.parse late in the long test run with "AST
#: constructor recursion depth mismatch", an interpreter bug a new interpreter does not hit
_SCAN = """
import ast, json, pathlib, sys
found = []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [[path.name, alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append([path.name, node.module])
print(json.dumps(found))
"""


def test_transports_import_nothing_else_from_plait() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _SCAN, str(PACKAGE)], capture_output=True, text=True, timeout=120, check=True
    )
    offenders = []
    for file_name, name in json.loads(done.stdout):
        if name.startswith("plait") and not name.startswith("plait.transports") and name != FOUNDATION:
            offenders.append(f"{file_name}: {name}")
        if name.split(".")[0] in {"nest_asyncio", "greenback", "pickle", "dill"}:
            offenders.append(f"{file_name}: {name}")
    assert offenders == []


def test_the_plugin_lookup_imports_nothing_of_plait() -> None:
    import plait.plugins.entry_points as lookup

    tree = parse_source(Path(lookup.__file__).read_text(encoding="utf-8"))
    imported = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ] + [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert [name for name in imported if name.startswith("plait")] == []


def test_every_exported_name_exists() -> None:
    for name in plait.transports.__all__:
        assert getattr(plait.transports, name) is not None


def test_built_in_plugins_are_found_by_name() -> None:
    assert get_transport_class("local") is LocalTransport
    assert get_transport_class("ssh") is SshTransport
    assert get_transport_class("ssh-blocking") is BlockingSshTransport
    plugins = load_transport_plugins()
    assert {"local", "ssh", "ssh-blocking"} <= set(plugins)
    assert all(issubclass(cls, Transport | BlockingTransport) for cls in plugins.values())


def test_unknown_plugin_names_the_installed_ones() -> None:
    expected = r"no plugin named 'carrier-pigeon' in 'plait.transports'.*local.*ssh"
    with pytest.raises(LookupError, match=expected):
        get_transport_class("carrier-pigeon")
