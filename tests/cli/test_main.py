"""The top-level command: version, help, global --profile, one-line errors, the real console script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import plait
import plait.storage
from plait.cli import status as status_module

from .helpers import assert_one_line_error, plait_command


def test_version(invoke):
    result = invoke("--version")
    assert result.stdout.strip() == f"plait {plait.__version__}"


def test_help_lists_every_command(invoke):
    result = invoke("--help")
    for command in ("status", "profile", "process", "node", "run", "demo"):
        assert command in result.stdout
    assert "--profile" in result.stdout and "-P" in result.stdout


def test_unknown_command_is_one_line(invoke):
    result = invoke("frobnicate", code=2)
    assert_one_line_error(result, "No such command 'frobnicate'", "plait --help")


def test_unknown_profile_is_one_line(invoke):
    assert_one_line_error(invoke("-P", "nope", "status", code=None), "profile 'nope' does not exist", code=1)


def test_plait_profile_environment_variable_selects_the_profile(invoke, monkeypatch):
    monkeypatch.setenv("PLAIT_PROFILE", "elsewhere")
    assert_one_line_error(invoke("status", code=None), "profile 'elsewhere' does not exist")


def test_unexpected_error_is_one_line_unless_debugging(invoke, monkeypatch):
    def broken(profile):
        raise RuntimeError("the hook broke")

    monkeypatch.setattr(status_module, "_daemon_status", broken)
    line = assert_one_line_error(invoke("status", code=None), "unexpected RuntimeError: the hook broke")
    assert "PLAIT_DEBUG=1" in line

    monkeypatch.setenv("PLAIT_DEBUG", "1")
    result = invoke("status", code=1)
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: unexpected RuntimeError")


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLAIT_HOME": str(home), "NO_COLOR": "1"}
    env.pop("PLAIT_PROFILE", None)
    return subprocess.run(plait_command() + args, capture_output=True, text=True, env=env, timeout=120)


def test_console_script_end_to_end(plait_home, tmp_path):
    """The installed `plait` script: version, the demo, a graph, and a one-line error."""
    version = _run(["--version"], plait_home)
    assert version.returncode == 0 and version.stdout.strip() == f"plait {plait.__version__}"

    demo = _run(["demo"], plait_home)
    assert demo.returncode == 0, demo.stderr
    assert "NewtonSqrtWorkChain" in demo.stdout and "finished [0]" in demo.stdout
    # stderr holds the work chain's report lines as they happened (plait.report), and nothing else
    assert demo.stderr and all(
        " REPORT [" in line and "|NewtonSqrtWorkChain|" in line for line in demo.stderr.splitlines()
    ), demo.stderr

    # what the subprocess recorded is in this profile's database
    plait.storage.reset()
    backend = plait.storage.get_backend()
    rows = backend.list_processes()
    chain = [row for row in rows if row["process_label"] == "NewtonSqrtWorkChain"]
    assert len(chain) == 1 and chain[0]["state"] == "finished" and chain[0]["exit_status"] == 0
    assert backend.count_nodes() == 24

    listing = _run(["process", "list", "-a"], plait_home)
    assert listing.returncode == 0 and f"{chain[0]['id']} " in listing.stdout

    error = _run(["-P", "nope", "process", "list"], plait_home)
    assert error.returncode == 1
    assert error.stderr.strip().splitlines() == [
        "Error: profile 'nope' does not exist (known profiles: default)"
    ]
    assert error.stdout == ""


@pytest.mark.parametrize("args", [["process", "show", "999999"], ["node", "graph", "999999"]])
def test_console_script_unknown_pk(plait_home, args):
    result = _run(args, plait_home)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["Error: no node with pk 999999 in profile 'default'"]
