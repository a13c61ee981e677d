"""What ``plait process kill|pause|play`` answer (exit code and line), wherever the process is held.

The command runs as the real console script (a subprocess, as a user runs it), with a
deadline; the processes are held by a script running ``plait.run`` (a subprocess), by a
daemon worker, or by nobody.  Outcomes are asserted (exit code, output, states), never
how long anything took.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import plait.storage
from plait import run, submit
from plait.orm import Str

from .helpers import plait_command
from .test_daemon import (  # noqa: F401 - daemon_env is a fixture
    TESTS,
    Ticker,
    daemon_env,
    held_by_worker,
    process_row,
    wait_for,
)

SCRIPT = """
import sys
import plait
from plait.orm import Str
from cli.test_daemon import Ticker

try:
    plait.run(Ticker, path=Str(sys.argv[1]))
except plait.ProcessKilledError as exc:
    print(f"run raised ProcessKilledError: {exc}", flush=True)
    sys.exit(3)
print("run returned", flush=True)
"""


def plait_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """``plait ARGS`` as a subprocess; its deadline is well past the CLI's own (30 s + 5 s grace)."""
    return subprocess.run(
        [*plait_command(), *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def answer(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


@contextlib.contextmanager
def script_running_ticker(gate: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """A script blocked in ``plait.run(Ticker)``; yields it and the pk it holds; always reaped."""
    plait.storage.load_profile()
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, gate],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        },
    )
    try:
        backend = plait.storage.get_backend()

        def held_by_the_script():
            for row in backend.list_processes(states=["running"]):
                if (row["lease_owner"] or "").split(":")[1:2] == [str(process.pid)]:
                    return row["id"]
            return None

        pk = wait_for(held_by_the_script, "the script to run its work chain", timeout=60)
        yield process, pk
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)


def test_kill_of_a_process_held_by_a_script(tmp_path):
    """``plait process kill PK`` of a process that a script runs with ``plait.run``.

    Defect guarded: the script's runner stopped its control server as soon as its last
    process ended — which the kill itself caused — before the kill's reply was posted; the
    CLI waited its whole timeout (30 s + 5 s grace) and exited 1 with "no reply from ...".
    Now: exit 0, ``PK: killed``, and the script's ``run`` raised ProcessKilledError.
    """
    with script_running_ticker(str(tmp_path / "gate")) as (process, pk):
        result = plait_cli("process", "kill", str(pk), "-m", "stop now")
        output, _ = process.communicate(timeout=60)
    assert result.returncode == 0, f"{answer(result)}\nthe script said:\n{output}"
    assert result.stdout.strip() == f"{pk}: killed", answer(result)
    assert result.stderr == ""
    assert process.returncode == 3, output
    assert "run raised ProcessKilledError" in output and "stop now" in output, output
    row = process_row(pk)
    assert (row["state"], row["exit_message"], row["lease_owner"]) == ("killed", "stop now", None)


def test_pause_and_play_of_a_process_held_by_a_script(tmp_path):
    """``plait process pause PK`` then ``play PK`` of a script-held process: exit 0 each, and it goes on.

    A regression guard (it passes on the code before the rewrite too): the reply path that
    the kill above lost — a script runner's control server — must keep answering pause and
    play, and neither may stop the server while the script still runs.
    """
    gate = tmp_path / "gate"
    with script_running_ticker(str(gate)) as (process, pk):
        paused = plait_cli("process", "pause", str(pk))
        assert paused.returncode == 0, answer(paused)
        assert paused.stdout.strip() in (
            f"{pk}: paused",
            f"{pk}: pause requested: it takes effect at the next safe point",
        )
        wait_for(lambda: process_row(pk)["paused"], "the pause to be recorded")
        played = plait_cli("process", "play", str(pk))
        assert played.returncode == 0, answer(played)
        assert played.stdout.strip() == f"{pk}: played", answer(played)
        wait_for(lambda: not process_row(pk)["paused"], "the play to be recorded")
        gate.touch()
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and "run returned" in output, output
    assert process_row(pk)["state"] == "finished"


def test_kill_of_a_finished_process_says_so(tmp_path):
    """``plait process kill PK`` of a process that finished: nothing to do, which is not an error.

    A regression guard: an "already finished" answer must not be reported as a failure.
    """
    gate = tmp_path / "gate"
    gate.touch()
    run(Ticker, path=Str(str(gate)))
    (row,) = plait.storage.get_backend().list_processes(states=["finished"])
    result = plait_cli("process", "kill", str(row["id"]))
    assert result.returncode == 0, answer(result)
    assert result.stdout.strip() == f"{row['id']}: already finished", answer(result)
    assert process_row(row["id"])["state"] == "finished"


@pytest.mark.usefixtures("daemon_env")
def test_kill_of_a_process_held_by_a_daemon_worker(tmp_path):
    """``plait process kill PK`` of a process a daemon worker runs: exit 0, and it ends killed.

    A regression guard for the holder's answer (a worker keeps its control server while it lives).
    """
    started = plait_cli("daemon", "start", "1")
    assert started.returncode == 0, answer(started)
    node = submit(Ticker, path=Str(str(tmp_path / "gate")))
    wait_for(lambda: held_by_worker(node.pk), "the worker to run the ticker", timeout=60)
    result = plait_cli("process", "kill", str(node.pk), "-m", "wrong input")
    assert result.returncode == 0, answer(result)
    assert result.stdout.strip() == f"{node.pk}: killed", answer(result)
    wait_for(lambda: process_row(node.pk)["state"] == "killed", "the ticker to be killed")
    row = process_row(node.pk)
    assert row["exit_message"] == "wrong input" and row["lease_owner"] is None


def test_kill_of_a_process_nobody_holds(plait_home, tmp_path):
    """Submitted with no daemon running: the kill is made in the database, exit 0 (a regression guard)."""
    node = submit(Ticker, path=Str(str(tmp_path / "gate")))
    result = plait_cli("process", "kill", str(node.pk))
    assert result.returncode == 0, answer(result)
    assert result.stdout.strip() == f"{node.pk}: killed", answer(result)
    row = process_row(node.pk)
    assert (row["state"], row["exit_message"], row["lease_owner"]) == ("killed", "killed by request", None)


def test_kill_of_a_process_whose_script_died_with_sigkill(tmp_path):
    """The script that held the process was killed with SIGKILL: its lease has not expired.

    Defects guarded: control takes a dead holder for nobody, but the unheld write refuses a
    row with an unexpired lease, so the kill answered "its holder kept changing; try again"
    — and the CLI exited 0 with that line (it is not among the answers it reports as
    errors), the process still ``running`` — a regression of the lifecycle rewrite.  The
    kill must work: exit 0, ``PK: killed``.
    """
    with script_running_ticker(str(tmp_path / "gate")) as (process, pk):
        process.kill()
        process.wait(timeout=30)
    result = plait_cli("process", "kill", str(pk))
    row = process_row(pk)
    assert (result.stdout.strip(), row["state"]) == (f"{pk}: killed", "killed"), answer(result)
    assert result.returncode == 0, answer(result)
    assert row["lease_owner"] is None
