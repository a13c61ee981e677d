"""``plait daemon start|stop|restart|status|incr|decr|logs`` with a real daemon.

Every test that starts a daemon uses the ``daemon_env`` fixture: the workers
can import this module (``PYTHONPATH`` includes ``tests/``), leases are short,
and at the end the daemon is stopped and any process left with this test's
``PLAIT_HOME`` is killed, so no test leaves a daemon running.

The work chains below are used by ``test_process_control.py`` too; they wait
on a file (a "gate") that the test creates, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import plait.storage
from plait import ToContext, WorkChain, while_
from plait.cli.main import cli
from plait.orm import Str

from .helpers import assert_one_line_error, plait_command

TESTS = Path(__file__).resolve().parents[1]
#: lease time of the test daemons' workers: short, so that a killed worker's processes are taken over soon
LEASE_SECONDS = 2.0


# -- work chains run by the test daemons -------------------------------------------------------------


class Ticker(WorkChain):
    """Ticks until the file ``path`` exists; every tick is a step, so a checkpoint and a safe point."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.outline(cls.begin, while_(cls.closed)(cls.tick), cls.end)

    def begin(self):
        self.ctx.ticks = 0
        self.report("ticking until %s exists", self.inputs.path.value)

    def closed(self):
        return not os.path.exists(self.inputs.path.value)

    async def tick(self):
        self.ctx.ticks += 1
        await asyncio.sleep(0.05)

    def end(self):
        self.report("the gate opened after %d ticks", self.ctx.ticks)


class Gate(WorkChain):
    """One async step that waits until the file ``path`` exists."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.outline(cls.wait)

    async def wait(self):
        while not os.path.exists(self.inputs.path.value):
            await asyncio.sleep(0.05)
        self.report("the gate is open")


class Parent(WorkChain):
    """Submits a Gate child and waits for it (parked in the database meanwhile)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.outline(cls.launch, cls.done)

    def launch(self):
        self.report("launching the gate")
        return ToContext(gate=self.submit(Gate, path=self.inputs.path))

    def done(self):
        self.report("the gate finished: %s", self.ctx.gate.process_state.value)


# -- helpers -------------------------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], object], what: str, timeout: float = 30.0, interval: float = 0.05
) -> object:
    """Poll ``condition`` until it returns something true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def process_row(pk: int) -> dict:
    row = plait.storage.get_backend().get_process(pk)
    assert row is not None
    return row


def held_by_worker(pk: int) -> str | None:
    """The worker id holding ``pk`` while it runs (None while it is not held, or not running)."""
    row = process_row(pk)
    owner = row["lease_owner"]
    if row["state"] == "running" and owner and ":worker:" in owner:
        return owner
    return None


def _processes_of_home(home: Path) -> list[int]:
    """Pids of the processes (other than this one) started with this test's ``PLAIT_HOME``."""
    marker = f"PLAIT_HOME={home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if marker in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture
def daemon_env(plait_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Environment for a real daemon on this test's ``PLAIT_HOME``; stops it (and kills strays) at the end."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("PLAIT_LEASE_SECONDS", str(LEASE_SECONDS))
    try:
        yield plait_home
    finally:
        with contextlib.suppress(Exception):
            CliRunner().invoke(cli, ["daemon", "stop", "--timeout", "20"])
        for pid in _processes_of_home(plait_home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def status_rows(stdout: str) -> dict[int, list[str]]:
    """The worker rows of ``plait daemon status``, by worker index."""
    rows = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[0].isdigit() and fields[1].isdigit():
            rows[int(fields[0])] = fields
    return rows


def started_pids(stdout: str) -> tuple[int, list[int]]:
    """``(supervisor pid, worker pids)`` from what ``plait daemon start`` printed."""
    match = re.search(r"supervisor pid (\d+), \d+ workers? \(pids? ([\d, ]+)\)", stdout)
    assert match, stdout
    return int(match.group(1)), [int(pid) for pid in match.group(2).split(", ")]


# -- tests ---------------------------------------------------------------------------------------------


def test_commands_when_the_daemon_is_not_running(invoke, plait_home):
    result = invoke("daemon", "status", code=3)
    assert result.stdout.strip() == "the daemon of profile 'default' is not running"
    assert result.stderr == ""

    assert "is not running" in invoke("daemon", "stop").stdout  # already stopped: fine
    assert_one_line_error(invoke("daemon", "incr", code=1), "the daemon of profile 'default' is not running")
    assert_one_line_error(invoke("daemon", "decr", code=1), "is not running")
    assert_one_line_error(invoke("daemon", "logs", code=1), "no daemon logs for profile 'default'")
    assert_one_line_error(invoke("daemon", "start", "0", code=2), "0")

    status = invoke("status").stdout
    assert "not running (start it with `plait daemon start`)" in status


def test_start_status_incr_decr_logs_restart_stop(invoke, daemon_env):
    started = invoke("daemon", "start").stdout
    assert "Started the daemon of profile 'default'" in started
    supervisor, workers = started_pids(started)
    assert len(workers) == 1

    again = invoke("daemon", "start", "2", code=1)
    assert_one_line_error(again, "the daemon of profile 'default' is already running", f"(pid {supervisor})")

    status = invoke("daemon", "status").stdout
    assert f"supervisor  pid {supervisor}, up " in status
    rows = status_rows(status)
    assert list(rows) == [0]
    _, pid, alive, restarts = rows[0][:4]
    assert (int(pid), alive, restarts) == (workers[0], "yes", "0")
    assert "MiB" in status and "Held" in status and "Heartbeat" in status

    overview = invoke("status").stdout
    assert f"running (pid {supervisor}, 1 worker)" in overview

    added = invoke("daemon", "incr").stdout
    assert "Added 1 worker: the daemon of profile 'default' has 2 workers" in added
    rows = status_rows(invoke("daemon", "status").stdout)
    assert list(rows) == [0, 1] and all(row[2] == "yes" for row in rows.values())

    removed = invoke("daemon", "decr").stdout
    assert "Removed 1 worker: the daemon of profile 'default' has 1 worker" in removed
    assert_one_line_error(invoke("daemon", "decr", code=1), "has 1 worker: at least one must remain")
    invoke("daemon", "incr", "2")

    # every worker registers itself in the database when it starts
    wait_for(lambda: len(plait.storage.get_backend().list_workers()) == 3, "3 workers in the database")
    logs = invoke("daemon", "logs", "-n", "5").stdout.splitlines()
    assert any(line.startswith("supervisor: ") and "started" in line for line in logs)
    assert any(line.startswith("worker-0: ") for line in logs)
    assert all(
        len([x for x in logs if x.startswith(f"{name}: ")]) <= 5 for name in ("supervisor", "worker-0")
    )

    restarted = invoke("daemon", "restart").stdout
    assert f"Stopped the daemon of profile 'default' (pid {supervisor})" in restarted
    new_supervisor, new_workers = started_pids(restarted)
    assert new_supervisor != supervisor and len(new_workers) == 3
    with pytest.raises(ProcessLookupError):
        os.kill(supervisor, 0)

    reset = invoke("daemon", "restart", "--reset").stdout
    assert len(started_pids(reset)[1]) == 1

    stopped = invoke("daemon", "stop").stdout
    assert "Stopped the daemon of profile 'default'" in stopped
    assert invoke("daemon", "status", code=3).stdout.strip().endswith("is not running")
    assert "restart" in invoke("daemon", "--help").stdout


def test_a_killed_worker_is_restarted_and_its_process_taken_over(invoke, daemon_env, tmp_path):
    from plait import submit

    invoke("daemon", "start", "1")
    gate = tmp_path / "gate"
    node = submit(Ticker, path=Str(str(gate)))
    owner = wait_for(lambda: held_by_worker(node.pk), "the ticker to run in the worker")
    old_pid = int(owner.split(":")[1])
    listed = invoke("process", "list").stdout
    assert f"worker {old_pid}" in listed

    os.kill(old_pid, signal.SIGKILL)

    def restarted():
        rows = status_rows(invoke("daemon", "status").stdout)
        return rows if rows[0][3] == "1" and rows[0][2] == "yes" else None

    rows = wait_for(restarted, "the supervisor to restart the worker")
    new_pid = int(rows[0][1])
    assert new_pid != old_pid
    # the new worker takes the process over once the dead worker's lease has expired
    new_owner = wait_for(
        lambda: (held_by_worker(node.pk) or "").startswith(f"{owner.split(':')[0]}:{new_pid}:") or None,
        "the new worker to take the ticker over",
        timeout=LEASE_SECONDS + 30,
    )
    assert new_owner
    gate.touch()
    wait_for(lambda: process_row(node.pk)["state"] == "finished", "the ticker to finish")
    assert process_row(node.pk)["exit_status"] == 0
    logs = invoke("daemon", "logs", "-n", "20").stdout
    assert f"(pid {old_pid}) died" in logs


def test_start_in_the_foreground(invoke, daemon_env, tmp_path):
    """In the foreground, on a profile whose options ask for 2 workers by default; SIGTERM stops it."""
    from plait import submit
    from plait.daemon import client
    from plait.storage import create_profile

    create_profile("fg", options={"daemon": {"workers": 2}})
    profile = plait.storage.load_profile("fg")
    foreground = subprocess.Popen(
        [*plait_command(), "-P", "fg", "daemon", "start", "--foreground"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: client.is_running(profile), "the foreground daemon to answer")
        status = client.status(profile)
        assert status["pid"] == foreground.pid and len(status["workers"]) == 2
        assert_one_line_error(invoke("-P", "fg", "daemon", "start", code=1), "is already running")

        gate = tmp_path / "gate"
        gate.touch()
        node = submit(Ticker, path=Str(str(gate)))
        wait_for(lambda: process_row(node.pk)["state"] == "finished", "the ticker to finish")

        foreground.send_signal(signal.SIGTERM)
        _, stderr = foreground.communicate(timeout=30)
    finally:
        if foreground.poll() is None:
            foreground.kill()
            foreground.communicate()
    assert foreground.returncode == 0, stderr
    assert "in the foreground" in stderr and "with 2 workers" in stderr and "stopped" in stderr
    assert "worker 1 started" in stderr  # the supervisor's log, on stderr too
    assert "Traceback" not in stderr
    assert not client.is_running(profile)
