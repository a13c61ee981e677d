"""``plait process pause|play|kill|watch`` and the holder and paused columns of ``process list``.

Processes run in a real daemon (started with ``plait daemon start``) or in a
real script (``plait.run`` in a subprocess); the work chains wait on a gate
file (see ``test_daemon.py``), and the tests wait for the database to say
what they expect, with a deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

import plait.storage
from plait import submit
from plait.cli.main import cli
from plait.orm import Int, Str, load_node

from .helpers import assert_one_line_error, plait_command
from .test_daemon import (  # noqa: F401 - daemon_env is a fixture
    TESTS,
    Parent,
    Ticker,
    daemon_env,
    held_by_worker,
    process_row,
    wait_for,
)

with_daemon = pytest.mark.usefixtures("daemon_env")


def _lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.strip().splitlines()]


def _list_row(stdout: str, pk: int) -> str:
    for line in stdout.splitlines():
        if line.split(" ", 1)[0] == str(pk):
            return line
    raise AssertionError(f"process {pk} is not listed:\n{stdout}")


def _children(pk: int) -> list[dict]:
    return plait.storage.get_backend().get_children(pk)


class Watch:
    """``plait process watch PK`` as a real subprocess; its output lines are collected as they come."""

    def __init__(self, pk: int) -> None:
        self.process = subprocess.Popen(
            [*plait_command(), "process", "watch", str(pk), "--interval", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, fragment: str) -> None:
        wait_for(lambda: any(fragment in line for line in self.lines), f"`{fragment}` in the watch output")

    def finish(self, timeout: float = 60) -> str:
        """Wait for the watch to exit; its whole output."""
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_control_without_a_daemon(invoke, plait_home, tmp_path):
    """Nobody holds a submitted process: pause, play and kill act in the database; errors per pk."""
    gate = str(tmp_path / "gate")
    first = submit(Ticker, path=Str(gate))
    second = submit(Ticker, path=Str(gate))
    data = Int(5).store()

    result = invoke("process", "pause", str(first.pk), "99999", str(data.pk), str(second.pk), code=1)
    assert _lines(result.stdout) == [f"{first.pk}: paused", f"{second.pk}: paused"]
    errors = _lines(result.stderr)
    assert errors == [
        "Error: 99999: no node with pk 99999 in profile 'default'",
        f"Error: {data.pk}: node {data.pk} is a Int, not a process: use `plait node show {data.pk}`",
    ]
    assert load_node(first.pk).paused and load_node(second.pk).paused

    listed = invoke("process", "list").stdout
    assert "created, paused" in _list_row(listed, first.pk)
    assert "(2 created; 2 paused)" in listed
    assert _lines(invoke("process", "pause", str(first.pk)).stdout) == [f"{first.pk}: already paused"]

    played = invoke("process", "play", str(first.pk)).stdout
    assert _lines(played) == [f"{first.pk}: played"]
    assert not load_node(first.pk).paused
    paused_only = invoke("process", "list", "--paused").stdout
    assert str(second.pk) in paused_only and _list_row(paused_only, second.pk)
    assert first.pk not in [int(line.split()[0]) for line in paused_only.splitlines() if line[:1].isdigit()]
    assert _lines(invoke("process", "play", str(first.pk)).stdout) == [f"{first.pk}: not paused"]

    # --all asks first; declining does nothing
    declined = CliRunner().invoke(cli, ["process", "play", "--all"], input="n\n")
    assert declined.exit_code == 1
    assert (
        "Play 1 paused process" in declined.stderr and "cancelled: no process was played" in declined.stderr
    )
    assert load_node(second.pk).paused
    assert _lines(invoke("process", "play", "--all", "-y").stdout) == [f"{second.pk}: played"]
    assert "There are no paused processes to play." in invoke("process", "play", "--all").stdout

    killed = invoke("process", "kill", str(first.pk), "-m", "not needed any more").stdout
    assert _lines(killed) == [f"{first.pk}: killed"]
    node = load_node(first.pk)
    assert node.process_state.value == "killed" and node.exit_message == "not needed any more"
    assert _lines(invoke("process", "kill", str(first.pk)).stdout) == [f"{first.pk}: already killed"]
    assert _lines(invoke("process", "kill", "--all", "--yes").stdout) == [f"{second.pk}: killed"]

    assert_one_line_error(invoke("process", "pause", code=2), "which processes?")
    assert_one_line_error(invoke("process", "kill", "--all", str(first.pk), code=2), "not both")


@with_daemon
def test_pause_survives_a_daemon_restart_then_play(invoke, tmp_path):
    gate = tmp_path / "gate"
    invoke("daemon", "start", "1")
    parent = submit(Parent, path=Str(str(gate)))
    ticker = submit(Ticker, path=Str(str(gate)))
    wait_for(lambda: held_by_worker(ticker.pk), "the ticker to run in the worker")
    child = wait_for(lambda: (_children(parent.pk) or [None])[0], "the parent's child")["node_id"]
    wait_for(lambda: held_by_worker(child), "the child to run in the worker")
    wait_for(lambda: process_row(parent.pk)["lease_owner"] is None, "the parent to be parked")

    listed = invoke("process", "list").stdout
    worker_pid = held_by_worker(ticker.pk).split(":")[1]
    assert f"worker {worker_pid}" in _list_row(listed, ticker.pk)
    assert _list_row(listed, parent.pk).rstrip().endswith("-")  # parked: nobody holds it

    # the parent is parked (nobody holds it): paused in the database; the ticker is paused by its worker
    result = invoke("process", "pause", str(parent.pk), str(ticker.pk))
    assert _lines(result.stdout) == [f"{parent.pk}: paused", f"{ticker.pk}: paused"]
    wait_for(
        lambda: process_row(ticker.pk)["lease_owner"] is None, "the worker to let go of the paused ticker"
    )
    assert load_node(parent.pk).paused and load_node(ticker.pk).paused

    gate.touch()  # the child finishes; the paused parent must not continue, nor the paused ticker
    wait_for(lambda: process_row(child)["state"] == "finished", "the child to finish")

    invoke("daemon", "restart")
    for pk, state in ((parent.pk, "waiting"), (ticker.pk, "running")):
        row = process_row(pk)
        assert (row["state"], row["paused"]) == (state, True)
    paused = invoke("process", "list", "--paused").stdout
    assert "paused" in _list_row(paused, parent.pk) and "paused" in _list_row(paused, ticker.pk)

    result = invoke("process", "play", str(parent.pk), str(ticker.pk))
    assert _lines(result.stdout) == [f"{parent.pk}: played", f"{ticker.pk}: played"]
    for pk in (parent.pk, ticker.pk):
        wait_for(lambda pk=pk: process_row(pk)["state"] == "finished", f"process {pk} to finish")
        assert process_row(pk)["exit_status"] == 0 and not process_row(pk)["paused"]


@with_daemon
def test_kill_a_work_chain_kills_its_children(invoke, tmp_path):
    gate = tmp_path / "gate"  # never opened
    invoke("daemon", "start", "1")
    parent = submit(Parent, path=Str(str(gate)))
    ticker = submit(Ticker, path=Str(str(gate)))
    child = wait_for(lambda: (_children(parent.pk) or [None])[0], "the parent's child")["node_id"]
    wait_for(lambda: held_by_worker(child) and held_by_worker(ticker.pk), "the child and the ticker to run")

    result = invoke("process", "kill", str(parent.pk), str(ticker.pk), "-m", "wrong input")
    assert _lines(result.stdout) == [f"{parent.pk}: killed", f"{ticker.pk}: killed"]
    wait_for(lambda: process_row(child)["state"] == "killed", "the child to be killed")
    assert process_row(parent.pk)["exit_message"] == "wrong input"
    assert process_row(ticker.pk)["exit_message"] == "wrong input"
    assert process_row(child)["exit_message"] == f"its caller {parent.pk} was killed"
    assert all(process_row(pk)["lease_owner"] is None for pk in (parent.pk, ticker.pk, child))
    listed = invoke("process", "list", "-a").stdout
    assert "killed" in _list_row(listed, child) and "paused" not in listed


@with_daemon
def test_watch_a_work_chain_in_the_daemon(invoke, tmp_path):
    gate = tmp_path / "gate"
    invoke("daemon", "start", "1")
    parent = submit(Parent, path=Str(str(gate)))
    child = wait_for(lambda: (_children(parent.pk) or [None])[0], "the parent's child")["node_id"]
    wait_for(lambda: held_by_worker(child), "the child to run in the worker")

    wait_for(lambda: process_row(parent.pk)["lease_owner"] is None, "the parent to be parked")
    watcher = Watch(parent.pk)
    try:
        watcher.wait_for_line(f"[{child}] Gate  -> running")  # the first look: the current states
        invoke("process", "pause", str(parent.pk))
        watcher.wait_for_line("REPORT  paused")
        invoke("process", "play", str(parent.pk))
        watcher.wait_for_line("REPORT  played")
        gate.touch()
        output = watcher.finish()
    finally:
        watcher.kill()
    assert watcher.process.returncode == 0, output
    lines = output.splitlines()
    assert lines[0].startswith(f"Watching process {parent.pk} (Parent) and its descendants")
    text = "\n".join(lines)
    assert f"[{parent.pk}] Parent  -> waiting: waiting for 1 process: {child}" in text
    assert f"[{child}] Gate  -> running  (worker " in text
    assert f"[{parent.pk}] Parent  -> waiting, paused: waiting for 1 process: {child}" in text
    assert f"[{parent.pk}] Parent  REPORT  paused" in text and f"[{parent.pk}] Parent  REPORT  played" in text
    assert f"[{child}] Gate  REPORT  the gate is open" in text
    assert f"[{child}] Gate  -> finished [0]" in text
    assert f"[{parent.pk}] Parent  REPORT  the gate finished: finished" in text
    assert f"[{parent.pk}] Parent  -> finished [0]" in text
    assert lines[-1] == f"Process {parent.pk} terminated: finished [0]"
    # children are indented under their caller
    child_line = next(line for line in lines if f"[{child}] Gate  -> finished" in line)
    assert child_line.split("  ", 1)[1].startswith("  [")


SCRIPT = """
import sys
import plait
from plait.orm import Str
from cli.test_daemon import Ticker

plait.run(Ticker, path=Str(sys.argv[1]))
"""


@with_daemon
def test_pause_play_and_watch_a_process_run_by_a_script(invoke, tmp_path):
    """No daemon: a script runs the work chain with ``plait.run``; control and watch still work."""
    gate = tmp_path / "gate"
    plait.storage.load_profile()
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(gate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    watcher = None
    try:
        backend = plait.storage.get_backend()
        pk = wait_for(
            lambda: next((row["id"] for row in backend.list_processes(states=["running"])), None),
            "the script's work chain to run",
        )
        owner = process_row(pk)["lease_owner"]
        assert owner.split(":")[1] == str(script.pid) and ":run:" in owner
        assert f"script {script.pid}" in _list_row(invoke("process", "list").stdout, pk)

        watcher = Watch(pk)
        watcher.wait_for_line(f"[{pk}] Ticker  -> running")
        assert _lines(invoke("process", "pause", str(pk)).stdout) == [f"{pk}: paused"]
        assert process_row(pk)["paused"]
        watcher.wait_for_line(f"[{pk}] Ticker  -> running, paused")
        gate.touch()  # paused: it does not tick any more, so it does not see the gate yet
        assert _lines(invoke("process", "play", str(pk)).stdout) == [f"{pk}: played"]
        output = watcher.finish()
        script_output, _ = script.communicate(timeout=60)
    finally:
        if watcher is not None:
            watcher.kill()
        if script.poll() is None:
            script.kill()
            script.communicate()
    assert script.returncode == 0, script_output
    assert watcher.process.returncode == 0, output
    assert f"[{pk}] Ticker  -> running, paused" in output
    assert f"[{pk}] Ticker  -> running  (script {script.pid})" in output
    assert f"[{pk}] Ticker  REPORT  the gate opened after" in output
    assert output.strip().endswith(f"Process {pk} terminated: finished [0]")
    assert process_row(pk)["exit_status"] == 0


def test_watch_errors(invoke, plait_home):
    data = Int(1).store()
    assert_one_line_error(invoke("process", "watch", str(data.pk), code=1), "is a Int, not a process")
    assert_one_line_error(invoke("process", "watch", "424242", code=1), "no node with pk 424242")
