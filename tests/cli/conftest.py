"""Fixtures for the ``plait`` command tests: a fresh ``$PLAIT_HOME`` per test and a way to invoke the CLI.

They work on their own (no fixture from a parent conftest is needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import plait.storage
from plait.cli.main import cli


@pytest.fixture
def plait_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty ``$PLAIT_HOME`` for this test; the storage singletons are reset around it."""
    home = tmp_path / "plait-home"
    monkeypatch.setenv("PLAIT_HOME", str(home))
    monkeypatch.delenv("PLAIT_PROFILE", raising=False)
    monkeypatch.delenv("PLAIT_DEBUG", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    plait.storage.reset()
    yield home
    plait.storage.reset()


Invoke = Callable[..., Result]


@pytest.fixture
def invoke(plait_home: Path) -> Invoke:
    """``invoke("process", "list", "-a")``: run the CLI here; checks the exit code (0 unless told)."""
    runner = CliRunner()

    def _invoke(*args: str, code: int | None = 0) -> Result:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (
                f"plait {' '.join(args)} exited {result.exit_code}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return _invoke


@pytest.fixture
def demo_pk(invoke: Invoke) -> int:
    """Run ``plait demo`` once and return the pk of its work chain."""
    invoke("demo")
    rows = plait.storage.get_backend().list_processes(states=None)
    return next(row["id"] for row in rows if row["process_label"] == "NewtonSqrtWorkChain")
