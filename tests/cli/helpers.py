"""Helpers shared by the CLI tests."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import Result


def assert_one_line_error(result: Result, *fragments: str, code: int | None = None) -> str:
    """The command failed with exactly one ``Error: ...`` line on stderr and no traceback."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def plait_command() -> list[str]:
    """The installed ``plait`` console script (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("plait")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("plait")
    if found is None:
        pytest.fail("the `plait` console script is not installed: pip install -e .")
    return [found]
