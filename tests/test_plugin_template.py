"""The plugin package template of docs/plugins.md builds, installs and passes its own tests.

The files are written out from the page's code blocks marked ``file=PATH`` (so the page and this
test cannot drift), installed as an outside package into a scratch virtual environment
(``--system-site-packages``, so plait comes from this interpreter's site-packages;
``pip install --no-deps --no-build-isolation``, so nothing is downloaded), and then, in that
environment: plait finds the entry points (``CalculationFactory``, ``plait plugin list``), and the
template's tests pass with its pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_docs import ROOT, read_blocks  # the Markdown block reader of the docs test

PLUGINS_PAGE = ROOT / "docs" / "plugins.md"
_FILE = re.compile(r"\bfile=(\S+)")


def template_files() -> dict[str, str]:
    """``{relative path: content}`` of every block of docs/plugins.md with ``file=`` in its info string."""
    files = {}
    for block in read_blocks(PLUGINS_PAGE):
        found = _FILE.search(block.info)
        if found:
            assert found[1] not in files, f"{block.where}: a second block for {found[1]}"
            files[found[1]] = block.code
    return files


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def test_the_template_lists_the_files_the_page_promises():
    files = template_files()
    assert set(files) == {
        "pyproject.toml",
        "src/plait_wordcount/__init__.py",
        "src/plait_wordcount/calculations.py",
        "src/plait_wordcount/parsers.py",
        "tests/conftest.py",
        "tests/test_wordcount.py",
    }
    layout = next(b.code for b in read_blocks(PLUGINS_PAGE) if b.info == "text")
    for path in files:
        assert Path(path).name in layout, f"the layout drawing of docs/plugins.md does not show {path}"


@pytest.mark.timeout(240)
def test_the_template_installs_as_an_outside_package_and_passes_its_tests(tmp_path: Path):
    package = tmp_path / "plait-wordcount"
    for relative, content in template_files().items():
        target = package / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "PYTHON", "VIRTUAL_ENV"))}
    env["PLAIT_HOME"] = str(tmp_path / "plait-home")  # the user's profile is never touched
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # --without-pip: the pip of the system site-packages serves the venv, so no ensurepip run
    _run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        tmp_path,
        env,
        60,
    )
    python = str(venv / "bin" / "python")
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-compile",
            str(package),
        ],
        tmp_path,
        env,
        120,
    )
    # one interpreter: where the package went, what the factories find, then `plait plugin list`
    listing = _run(
        [
            python,
            "-c",
            "import plait_wordcount; from plait.plugins import CalculationFactory as C, ParserFactory as P;"
            "print(plait_wordcount.__file__, C('wordcount.count').__module__, P('wordcount.count').__name__);"
            "from plait.cli.main import main; main()",
            "plugin",
            "list",
            "calculations",
            "wordcount.count",
        ],
        tmp_path,
        env,
        60,
    )
    found = listing.splitlines()[0].split()
    assert found[0].startswith(str(venv)), f"the package is used from {found[0]}, not from the venv"
    assert found[1:] == ["plait_wordcount.calculations", "WordCountParser"]
    assert "plait_wordcount.calculations:WordCountCalculation" in listing
    assert "plait-wordcount 0.1.0" in listing and "text" in listing and "words" in listing

    outside = _run(
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
        ],
        package,
        env,
        180,
    )
    assert re.search(r"\b3 passed\b", outside), outside
