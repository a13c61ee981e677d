"""Faults of the process lifecycle under control: each test guards one defect, named in its docstring.

* cancelling the task that awaits ``arun`` (a ``wait_for`` timeout), and Ctrl-C in a script's
  blocking ``run``, kill the process at once (recorded with its reason, the lease released)
  and kill its children; a step still running in a thread can commit nothing more;
* a kill of a looping work chain under the daemon stops the loop: no child, no report after it;
* a transport error that cannot succeed on retry pauses a calculation job at once;
* killing a calculation job that nobody holds cancels its scheduler job, on ``local``, ``ssh``,
  ``ssh-blocking`` and a blocking transport plugin.

The tests wait for outcomes in the database, with deadlines; none asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.conftest import daemon  # noqa: F401 - a fixture
from plait import arun, arun_get_node, submit
from plait.calculations.shell import ShellJob, run_shell_job
from plait.engine import control
from plait.engine.process import Process
from plait.orm import Bool, Computer, Float, Int, List, ProcessState, Str, load_node
from plait.plugins.entry_points import plugin_entry_points
from plait.storage import get_backend
from plait.transports import BlockingAdapter, CommandResult, PermissionDeniedError, TransportTimeoutError
from plait.transports import plugins as transport_plugins
from plait.transports.local import LocalTransport
from plait.transports.testing import LoopbackSshd, require_sshd
from wf_library import EVENTS, Forever, LaunchSlowToLoad, LoopLauncher, SleepJobParent, Slow, ThreadNap

TESTS = Path(__file__).resolve().parents[1]
TERMINAL = ("finished", "excepted", "killed")
ACTIVE = ("created", "running", "waiting")


# -- helpers ---------------------------------------------------------------------------------------------


def row_of(pk: int) -> dict:
    row = get_backend().get_process(pk)
    assert row is not None, f"process {pk} has no row"
    return row


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll ``condition`` until it returns something true, and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    """Poll ``condition`` on the loop until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def roots(states: list[str] | None = None) -> list[dict]:
    return [row for row in get_backend().list_processes(states=states) if row.get("caller_id") is None]


def trace_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def assert_killed_by_cancel(pk: int) -> dict:
    row = row_of(pk)
    assert row["state"] == "killed", row
    assert row["exit_message"] and "cancelled" in row["exit_message"], row["exit_message"]
    assert row["lease_owner"] is None and row["lease_expires"] is None, row
    assert any(log["message"].startswith("killed: ") for log in get_backend().get_logs(pk))
    return row


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def script_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }


@contextlib.contextmanager
def script(code: str, *args: str) -> Iterator[subprocess.Popen]:
    """A ``python -c code args...`` subprocess that can import the test workflows; always reaped."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=script_env(),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)


def held_by_pid(pk: int, pid: int) -> bool:
    owner = row_of(pk)["lease_owner"]
    return owner.split(":")[1:2] == [str(pid)]


# -- 1. cancelling the task that awaits arun -------------------------------------------------------------


async def test_wait_for_timeout_on_arun_kills_the_chain_and_its_child():
    """``wait_for(arun(chain), t)`` times out while the chain waits for a child.

    Defect guarded: the cancelled ``arun`` left the process ``waiting`` with this runner's
    lease and its child running (nothing recorded the cancellation), so ``plait process
    list`` showed it active forever.  Now it is recorded killed with the reason, its lease
    released, and its child killed too.
    """
    await arun(Slow, tag=Str("warm-up"), delay=Float(0.0))  # imports and first connections done
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(arun(Forever), 1.0)
    (parent,) = [row for row in roots() if row["process_label"] == "Forever"]
    assert_killed_by_cancel(parent["id"])
    children = get_backend().get_children(parent["id"])
    assert len(children) == 1, children  # the chain was waiting for its child when it was cancelled
    child = row_of(children[0]["node_id"])
    assert child["state"] == "killed" and child["lease_owner"] is None, child
    assert child["exit_message"] == f"its caller {parent['id']} was killed"


async def test_wait_for_timeout_interrupts_an_async_step():
    """The chain is in an ``async def`` step awaiting ``asyncio.sleep(300)`` when ``wait_for`` times out.

    Defect guarded: the cancellation stopped the task but recorded nothing: the process was
    left ``running`` with this runner's lease.  It must interrupt the await and record the
    process killed.
    """
    EVENTS.clear()
    await arun(Slow, tag=Str("warm-up"), delay=Float(0.0))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(arun(Slow, tag=Str("long"), delay=Float(300.0)), 1.0)
    (row,) = [row for row in roots() if row["process_label"] == "Slow" and row["state"] != "finished"]
    assert_killed_by_cancel(row["id"])
    assert "start long" in EVENTS and "end long" not in EVENTS  # interrupted in its await
    assert get_backend().get_children(row["id"]) == []  # its calcfunction never ran


@pytest.mark.parametrize("launch", [True, False], ids=["then-launches-a-child", "then-returns"])
async def test_wait_for_timeout_during_a_thread_step_kills_at_once_and_refuses_its_late_writes(
    tmp_path, launch
):
    """The chain is in a plain step (a thread, sleeping until a gate file exists) when ``wait_for``
    times out.  A thread cannot be interrupted, so the step runs on after the kill.

    Defects guarded: the cancellation recorded nothing while the step ran (the process looked
    alive for as long as the step slept); and a step's writes after a kill must be refused —
    a child launched by a killed process, a checkpoint moving a killed process back to
    ``running``.  Now the kill is recorded while the step still sleeps, the child launch is
    refused (the step sees the refusal), and so is the checkpoint.
    """
    gate, trace = tmp_path / "gate", tmp_path / "trace"
    seen: dict[str, object] = {}

    async def open_the_gate_once_killed() -> None:
        def killed_root():
            rows = [row for row in roots() if row["process_label"] == "ThreadNap"]
            return rows and rows[0]["state"] == "killed" and rows[0]

        row = await until(killed_root, "the chain to be recorded killed while its step sleeps", 60)
        seen["pk"] = row["id"]
        seen["trace_at_kill"] = trace_lines(trace)
        seen["checkpoints_at_kill"] = [c["seq"] for c in get_backend().get_checkpoints(row["id"])]
        gate.touch()

    opener = asyncio.ensure_future(open_the_gate_once_killed())
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                arun(ThreadNap, gate=Str(str(gate)), trace=Str(str(trace)), launch=Bool(launch)), 1.0
            )
        await asyncio.wait_for(opener, 60)
    finally:
        gate.touch()
        opener.cancel()
    pk = seen["pk"]
    assert seen["trace_at_kill"] == ["started"]  # killed while the step was still sleeping in its thread
    lines = trace_lines(trace)
    if launch:
        assert len(lines) == 2 and lines[1].startswith("refused "), lines  # the launch was refused
    else:
        assert lines == ["started", "returned"]
    assert "after" not in lines
    assert get_backend().get_children(pk) == []  # no child created after the kill
    assert [row["id"] for row in get_backend().list_processes(states=None)] == [pk]
    assert [c["seq"] for c in get_backend().get_checkpoints(pk)] == seen["checkpoints_at_kill"]
    assert_killed_by_cancel(pk)


async def test_cancel_while_arun_stores_the_process_leaves_no_active_orphan(monkeypatch):
    """The task awaiting ``arun`` is cancelled while the new process is being stored (in a thread).

    Defect guarded: ``Runner.arun_get_node`` awaits ``create`` (the row is committed
    ``running``, leased by this runner) and only then starts the process; a cancellation
    in that window re-raises before ``start``/``await_process``, so nothing kills the
    process: it stays ``running`` with a live lease, never run by anyone (not submitted,
    so no daemon takes it), and control cannot kill it either (its holder is this live
    interpreter, which no longer knows it).  It must end ``killed``, or not exist.
    """
    stored = asyncio.Event()
    release = __import__("threading").Event()
    loop = asyncio.get_running_loop()
    original = Process._store_new

    def slow_store(self, **kwargs):
        node = original(self, **kwargs)
        if type(self) is Slow:
            loop.call_soon_threadsafe(stored.set)
            release.wait(30)
        return node

    monkeypatch.setattr(Process, "_store_new", slow_store)
    task = asyncio.ensure_future(arun(Slow, tag=Str("never"), delay=Float(300.0)))
    try:
        await asyncio.wait_for(stored.wait(), 30)
        task.cancel()
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = [row for row in roots() if row["process_label"] == "Slow"]
    assert len(rows) <= 1
    for row in rows:
        assert row["state"] not in ACTIVE, (
            f"process {row['id']} was left {row['state']}, held by {row['lease_owner']}"
        )
        assert row["lease_owner"] is None


# -- 2. Ctrl-C in a script's blocking run ------------------------------------------------------------


SIGINT_SCRIPT = """
import sys
import plait
from plait.orm import Str
import wf_library as lib

try:
    if sys.argv[1] == "forever":
        plait.run(lib.Forever)
    else:
        plait.run(lib.ThreadNap, gate=Str(sys.argv[2]), trace=Str(sys.argv[3]))
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("returned", flush=True)
"""


def test_ctrl_c_in_run_kills_the_chain_and_its_child():
    """SIGINT to a script blocked in ``plait.run(chain)`` while the chain waits for a child.

    Defect guarded: Ctrl-C ended the script but left the chain ``waiting`` and its child
    ``running``, both leased by a dead interpreter, until someone resumed them.  Now both
    are recorded killed (with the reason) and their leases released before the script exits.
    """
    with script(SIGINT_SCRIPT, "forever") as process:

        def chain_waits():
            rows = [row for row in roots(["waiting"]) if row["process_label"] == "Forever"]
            return rows and get_backend().get_children(rows[0]["id"]) and rows[0]["id"]

        pk = wait_for(chain_waits, 60, "the script's chain to wait for its child")
        wait_for(lambda: held_by_pid(pk, process.pid), 30, "the script to hold the chain")
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=90)
    assert process.returncode == 130 and "interrupted" in output, output
    assert_killed_by_cancel(pk)
    (child,) = get_backend().get_children(pk)
    child = row_of(child["node_id"])
    assert child["state"] == "killed" and child["lease_owner"] is None, child


def test_ctrl_c_in_run_during_a_thread_step_kills_at_once(tmp_path):
    """SIGINT while the script's chain sleeps in a plain (thread) step.

    Defect guarded: the kill was recorded only once the step ended — or never, if the
    interpreter exited first — and the step's late child launch was committed.  Now the
    process is killed while the step still sleeps (the script waits for the step to end
    before it exits), and the late launch is refused.
    """
    gate, trace = tmp_path / "gate", tmp_path / "trace"
    try:
        with script(SIGINT_SCRIPT, "thread", str(gate), str(trace)) as process:
            wait_for(lambda: trace_lines(trace) == ["started"], 60, "the step to start")
            (row,) = [row for row in roots() if row["process_label"] == "ThreadNap"]
            pk = row["id"]
            assert held_by_pid(pk, process.pid)
            process.send_signal(signal.SIGINT)
            wait_for(lambda: row_of(pk)["state"] == "killed", 60, "the kill to be recorded")
            assert process.poll() is None and trace_lines(trace) == ["started"]  # the step still sleeps
            gate.touch()
            output, _ = process.communicate(timeout=90)
    finally:
        gate.touch()
    assert process.returncode == 130 and "interrupted" in output, output
    lines = trace_lines(trace)
    assert len(lines) == 2 and lines[1].startswith("refused "), lines
    assert get_backend().get_children(pk) == []
    assert_killed_by_cancel(pk)


# -- 4. kill of a looping work chain under the daemon --------------------------------------------------


@pytest.mark.parametrize("turn", ["quick-children", "long-child"])
def test_kill_of_a_looping_chain_under_the_daemon_stops_the_loop(any_profile, daemon, turn):  # noqa: F811
    """A ``while_`` loop submitting one child per turn (``ToContext``) is killed under a 2-worker daemon.

    ``quick-children``: every child sleeps 0.1 s, so the kill lands anywhere in a turn (the
    parent parked, or being woken, or running a step in a worker).  ``long-child``: from the
    fourth turn on the child sleeps 300 s, and the kill lands while the parent waits for it.

    Defect guarded: the kill was recorded, but the loop went on — the parked parent, woken
    by its child's end (or a worker still running its step), ran another turn: it reported
    after the kill line, launched a new child after the kill, or its child ran on.  After
    ``control.kill`` returns: no new child, no report but the kill's, every descendant is
    ended (killed, or finished before the kill returned: a child that reaches its end while
    the kill travels to its worker finishes), none holds a lease; a long child is killed.
    """
    daemon(workers=2)
    backend = get_backend()
    long_from = 3 if turn == "long-child" else 10_000
    parent = submit(LoopLauncher, delay=Float(0.1), long_from=Int(long_from)).pk

    def ready():
        children = backend.get_children(parent)
        if turn == "quick-children":
            return len(children) >= 3
        return len(children) == 4 and children[3]["state"] == "running" and children[3]["lease_owner"]

    wait_for(ready, 90, "the loop to run its turns")

    result = control.kill([parent], message="enough turns")
    returned_at = datetime.now(UTC)
    assert result == {parent: "killed"}
    killed = row_of(parent)
    assert killed["state"] == "killed" and killed["exit_message"] == "enough turns"
    children_at_kill = {row["node_id"] for row in backend.get_children(parent)}
    logs = backend.get_logs(parent)
    kill_lines = [log for log in logs if log["message"] == "killed: enough turns"]
    assert len(kill_lines) == 1, [log["message"] for log in logs]

    def descendants_terminal():
        rows = backend.get_descendants(parent)
        return all(row["state"] in TERMINAL for row in rows) and rows

    wait_for(descendants_terminal, 60, "every descendant to end")
    # give a loop that wrongly went on the time of a few more turns (0.1 s each) to show it
    time.sleep(1.5)

    assert {row["node_id"] for row in backend.get_children(parent)} == children_at_kill
    late = [log["message"] for log in backend.get_logs(parent) if log["id"] > kill_lines[0]["id"]]
    assert all("kill" in message for message in late), late
    descendants = backend.get_descendants(parent)
    for row in descendants:
        assert row["state"] in ("finished", "killed"), (row, backend.get_logs(row["node_id"]))
        if row["state"] == "finished":
            assert row["mtime"] <= returned_at, (
                f"descendant {row['node_id']} finished after the kill returned"
            )
        assert row["lease_owner"] is None, row
    if turn == "long-child":
        last = row_of(max(children_at_kill))
        assert last["state"] == "killed" and last["exit_message"] == f"its caller {parent} was killed", last
    assert row_of(parent)["state"] == "killed" and row_of(parent)["exit_message"] == "enough turns"


@pytest.mark.parametrize("parent_at_kill", ["held-in-its-step", "parked"])
def test_kill_reaches_a_child_that_its_worker_has_claimed_but_not_started(daemon, tmp_path, parent_at_kill):  # noqa: F811
    """One worker; a chain submits a child that the worker claims (the lease is the worker's) but
    has not started yet (it is still being rebuilt: ``Worker._start`` -> ``Runner._load``); then
    the chain is killed.  The window is real (it was hit by the loop test above, with the
    child ``created`` and leased by the worker); ``SlowToLoad`` only widens it.

    Defects guarded:

    * ``held-in-its-step``: the worker that holds the chain handles the kill and kills the
      children through ``control.akill``; the child's holder is that same worker, so the
      request went to its own control server, which serves one request at a time and was
      busy with this very kill: no reply for 10 + 5 s ("no reply from ... within 10 s"),
      and meanwhile the child started and ran to the end;
    * ``parked``: the chain is parked (nobody holds it), the kill of the child goes to the
      worker, which does not know it yet (not in ``Runner._processes``), tries the unheld
      write, is refused by its own lease, answers "claimed meanwhile" — and the child, once
      loaded, runs to the end: a child of a killed chain finished after the kill.
    """
    daemon(workers=1)
    backend = get_backend()
    load_gate, hold_gate = tmp_path / "load-gate", tmp_path / "hold-gate"
    inputs = {"load_gate": Str(str(load_gate))}
    if parent_at_kill == "held-in-its-step":
        inputs["hold_gate"] = Str(str(hold_gate))
    parent = submit(LaunchSlowToLoad, **inputs).pk

    def claimed_not_started():
        children = backend.get_children(parent)
        if not children or children[0]["state"] != "created" or not children[0]["lease_owner"]:
            return None
        row = row_of(parent)
        if parent_at_kill == "parked" and (row["state"] != "waiting" or row["lease_owner"]):
            return None
        if parent_at_kill == "held-in-its-step" and (row["state"] != "running" or not row["lease_owner"]):
            return None
        return children[0]["node_id"]

    try:
        child = wait_for(claimed_not_started, 60, "the child to be claimed (not started) by the worker")
        result = control.kill([parent], message="stop it")
    finally:
        load_gate.touch()
        hold_gate.touch()
    assert result == {parent: "killed"}
    wait_for(lambda: row_of(child)["state"] in TERMINAL, 60, "the child to end")
    child_row = row_of(child)
    assert child_row["state"] == "killed", (child_row, [log["message"] for log in backend.get_logs(child)])
    assert child_row["exit_message"] == f"its caller {parent} was killed"
    assert row_of(parent)["state"] == "killed" and row_of(parent)["exit_message"] == "stop it"
    assert not any(log["message"].startswith("done") for log in backend.get_logs(parent))


# -- 5. a transport error that cannot succeed on retry ----------------------------------------------------


async def test_unretryable_upload_error_pauses_at_once_then_play_finishes(monkeypatch):
    """The upload of a ShellJob is refused with ``PermissionDeniedError`` (``retryable`` False).

    (Tests run as root, whom file permissions do not stop, so the local transport's
    ``puttree`` — the upload of the job's folder — is patched to refuse.)

    Defect guarded: every transport error was retried with backoff (``retry_max_attempts``
    times) before the job paused, although retrying a refused permission cannot help.  Now
    it pauses after the first attempt, its status saying it cannot succeed on retry; once
    the cause is fixed, ``play`` retries the upload and the job finishes.
    """
    assert PermissionDeniedError.retryable is False
    attempts: list[str] = []
    original = LocalTransport.puttree

    async def refused(self, localpath, remotepath):
        attempts.append(remotepath)
        raise PermissionDeniedError(
            "Permission denied", host=self.hostname, operation="puttree", path=remotepath
        )

    monkeypatch.setattr(LocalTransport, "puttree", refused)
    task = asyncio.ensure_future(arun_get_node(ShellJob, command=Str("echo"), arguments=List(["hello"])))
    try:

        def paused_and_logged():
            # the pause's log line is written just after its flag: wait for both
            row = next((r for r in roots() if r["paused"]), None)
            logs = get_backend().get_logs(row["id"]) if row else []
            return row if any("cannot succeed on retry" in log["message"] for log in logs) else None

        row = await until(paused_and_logged, "the job to pause", 60)
        pk = row["id"]
        assert row["state"] in ACTIVE
        assert row["status"].startswith("paused: upload failed and cannot succeed on retry: "), row["status"]
        assert "PermissionDeniedError" in row["status"]
        assert len(attempts) == 1
        messages = [log["message"] for log in get_backend().get_logs(pk)]
        assert not any("retrying" in m for m in messages), messages
        assert len([m for m in messages if "cannot succeed on retry" in m]) == 1, messages

        monkeypatch.setattr(LocalTransport, "puttree", original)  # the cause is fixed
        assert await asyncio.to_thread(control.play, [pk]) == {pk: "played"}
        outputs, node = await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert outputs["stdout"].get_content() == "hello\n"
    assert len(attempts) == 1
    assert not row_of(pk)["paused"]


# -- 6. kill of an unheld calculation job on a blocking transport ------------------------------------------


class BlockingLocalTransport(BlockingAdapter):
    """A blocking transport plugin (``blocking-local``): the local machine through plain calls.

    File operations are the ``local`` plugin's, run behind blocking calls (what
    :class:`BlockingAdapter` does); commands run with a blocking :mod:`subprocess`,
    each in a session of its own, as a paramiko-style plugin would.
    """

    plugin_name = "blocking-local"

    def __init__(self, hostname: str = "localhost") -> None:
        super().__init__(LocalTransport(hostname))

    def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        process = subprocess.Popen(
            ["bash", "-c", command],
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TransportTimeoutError(
                f"command still running after {timeout} s, killed",
                host=self.hostname,
                operation="exec_command_wait",
                path=workdir,
            ) from None
        return CommandResult(
            process.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
        )

    def whoami(self) -> str:
        return pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def blocking_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon) -> Iterator[str]:  # noqa: F811
    """Register ``blocking-local`` as an installed plugin (an entry point), here and in daemon workers."""
    folder = tmp_path / "plugins"
    info = folder / "plait_test_blocking_transport-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plait-test-blocking-transport\nVersion: 0.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[plait.transports]\nblocking-local = engine.test_control_faults:BlockingLocalTransport\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    )
    plugin_entry_points.cache_clear()
    assert transport_plugins.get_transport_class("blocking-local").__name__ == "BlockingLocalTransport"
    yield "blocking-local"
    plugin_entry_points.cache_clear()


def sleep_processes_of(job_pid: int) -> list[int]:
    """Pids of the ``sleep 300`` processes in the process group of job ``job_pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            if argv[:2] == [b"sleep", b"300"] and os.getpgid(int(entry)) == job_pid:
                found.append(int(entry))
        except (OSError, ProcessLookupError):
            continue
    return found


@pytest.fixture
def job_sshd(tmp_path: Path) -> Iterator[LoopbackSshd]:
    require_sshd()
    server = LoopbackSshd(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "ssh", "ssh-blocking", "blocking-plugin"])
def job_computer(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A computer (direct scheduler) reached by each kind of transport; returns its label."""
    kind = request.param
    options: dict = {}
    hostname = "localhost"
    if kind.startswith("ssh"):
        server = request.getfixturevalue("job_sshd")
        hostname, options = server.host, server.transport_options()
        transport_type = kind
    elif kind == "blocking-plugin":
        transport_type = request.getfixturevalue("blocking_plugin")
    else:
        transport_type = "local"
    computer = Computer(
        f"kill-{kind}",
        hostname=hostname,
        transport_type=transport_type,
        scheduler_type="direct",
        work_dir=str(tmp_path / "work"),
        minimum_poll_interval=0.05,
        safe_interval=0.0,
        retry_initial_interval=0.1,
    ).store()
    computer.configure(**options)
    return computer.label


def test_kill_of_an_unheld_job_cancels_its_scheduler_job_on_every_transport_kind(
    daemon,  # noqa: F811
    job_computer,
    tmp_path,
):
    """A ShellJob running ``sleep 300`` (direct scheduler) on a computer reached by ``local``,
    ``ssh``, ``ssh-blocking`` or a blocking transport plugin is queued by a daemon worker; the
    daemon stops (the worker lets go of it: nobody holds it, the job runs on); then
    ``control.kill``.

    Defect guarded: the unheld kill opened the transport with ``async with
    computer.get_transport()``, which a blocking plugin does not support (no async adapter):
    the cancel failed ("could not cancel scheduler job ...") and ``sleep 300`` ran on.  Now
    the cancel goes through a pooled connection with the adapter for every kind, the job's
    whole process group is signalled and the process logs ``cancelled scheduler job <id>``.
    """
    handle = daemon(workers=1)
    _, node = run_shell_job("sleep", arguments=["300"], computer=job_computer, submit=True)
    pk = node.pk

    def queued():
        row = row_of(pk)
        assert row["state"] in ACTIVE, (row, get_backend().get_logs(pk))
        return row["job_stage"] == "queued" and load_node(pk).job_id

    job_id = wait_for(queued, 90, "the job to be queued")
    job_pid = int(job_id)
    sleepers = wait_for(lambda: sleep_processes_of(job_pid), 30, "`sleep 300` to run")
    handle.client.stop(timeout=60)
    row = row_of(pk)
    assert row["lease_owner"] is None and row["state"] == "waiting" and row["job_stage"] == "queued", row
    assert all(process_alive(pid) for pid in sleepers)  # stopping the daemon leaves the job running

    try:
        assert control.kill([pk], message="not needed") == {pk: "killed"}
        wait_for(lambda: not any(process_alive(pid) for pid in sleepers), 30, "`sleep 300` to be gone")
    finally:
        for pid in sleepers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    messages = [log["message"] for log in get_backend().get_logs(pk)]
    assert f"cancelled scheduler job {job_id}" in messages, messages
    row = row_of(pk)
    assert row["state"] == "killed" and row["exit_message"] == "not needed", row
    assert ProcessState(row["state"]) is ProcessState.KILLED


def test_kill_of_a_held_chain_cancels_the_scheduler_job_of_its_child_on_every_transport_kind(
    daemon,  # noqa: F811
    job_computer,
):
    """A work chain held by a daemon worker waits for its ``ShellJob`` child (``sleep 300``, queued
    on a computer of each transport kind); ``control.kill`` of the chain returns only when the
    chain and the child are recorded killed, and the child's scheduler job is gone: its process
    group is signalled and the child logs ``cancelled scheduler job <id>``.
    """
    handle = daemon(workers=1)
    parent = submit(SleepJobParent, computer=Str(job_computer)).pk

    def queued_child():
        children = [c for c in get_backend().get_children(parent) if c["process_label"] == "ShellJob"]
        if not children:
            return None
        row = children[0]
        assert row["state"] in ACTIVE, (row, get_backend().get_logs(row["node_id"]))
        child = load_node(row["node_id"])
        return child if row["job_stage"] == "queued" and child.job_id else None

    child = wait_for(queued_child, 90, "the child's job to be queued")
    job_id = child.job_id
    sleepers = wait_for(lambda: sleep_processes_of(int(job_id)), 30, "`sleep 300` to run")
    try:
        assert control.kill([parent], message="stop it") == {parent: "killed"}
        assert row_of(parent)["state"] == "killed"
        assert row_of(child.pk)["state"] == "killed"
        wait_for(lambda: not any(process_alive(pid) for pid in sleepers), 30, "`sleep 300` to be gone")
    finally:
        for pid in sleepers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        handle.client.stop(timeout=60)
    messages = [log["message"] for log in get_backend().get_logs(child.pk)]
    assert f"cancelled scheduler job {job_id}" in messages, messages


# -- 7. kill of a process whose holder died ---------------------------------------------------------------


HOLD_SCRIPT = """
import plait
import wf_library as lib

plait.run(lib.Forever)
"""


def test_kill_of_a_process_whose_script_died_with_sigkill():
    """The script holding a chain dies with SIGKILL (no clean-up): its lease is still unexpired.

    Defect guarded: control treats a holder that is dead as nobody (``_live_holder``), but
    the unheld writes (``lifecycle.end_unheld``/``set_unheld``) only accept rows whose lease
    is NULL or expired; the kill was refused three times and answered "its holder kept
    changing; try again" until the dead script's lease expired (60 s) — a regression of the
    lifecycle rewrite (the code before it killed such a process).  The module says the
    database is the state of a process "whose runner died": the kill must succeed now.
    """
    with script(HOLD_SCRIPT) as process:

        def chain_waits():
            rows = [row for row in roots(["waiting"]) if row["process_label"] == "Forever"]
            return rows and get_backend().get_children(rows[0]["id"]) and rows[0]["id"]

        pk = wait_for(chain_waits, 60, "the script's chain to wait for its child")
        wait_for(lambda: held_by_pid(pk, process.pid), 30, "the script to hold the chain")
        process.kill()
        process.wait(timeout=30)
    assert row_of(pk)["lease_expires"] > time.time()  # the dead script's lease has not expired yet
    result = control.kill([pk], message="its script died")
    assert result == {pk: "killed"}
    row = row_of(pk)
    assert row["state"] == "killed" and row["lease_owner"] is None, row
    (child,) = get_backend().get_children(pk)
    wait_for(lambda: row_of(child["node_id"])["state"] == "killed", 30, "the child to be killed")
