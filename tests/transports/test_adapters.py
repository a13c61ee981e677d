"""as_async runs a blocking plugin in its own thread; as_blocking runs an async one on a loop of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import nbformat
import pytest
from nbclient import NotebookClient

from plait.transports import (
    AsyncAdapter,
    BlockingAdapter,
    PathNotFoundError,
    TransportClosedError,
    as_async,
    as_blocking,
)
from plait.transports.adapters import background_loop
from plait.transports.local import LocalTransport
from plait.transports.ssh import SshTransport
from plait.transports.testing import LoopbackSshd

T = TypeVar("T")


class RecordingBlocking(BlockingAdapter):
    """A real blocking transport (local files behind as_blocking) that records who calls it."""

    def __init__(self) -> None:
        super().__init__(LocalTransport())
        self.threads: set[int] = set()
        self.calls: list[str] = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def _run(self, func: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            self.threads.add(threading.get_ident())
            self.calls.append(func.__name__)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return super()._run(func, *args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


class HangingBlocking(RecordingBlocking):
    """Its commands hang until close() is called, like a read on a dead socket."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = threading.Event()

    def exec_command_wait(self, command, stdin=None, workdir=None, timeout=None):  # type: ignore[no-untyped-def]
        if not self.closed.wait(30):
            raise AssertionError("close() never came")
        raise TransportClosedError("closed under the call", host=self.hostname, operation="exec_command_wait")

    def close(self) -> None:
        self.closed.set()
        super().close()


async def exercise(transport: Any, root: Path) -> None:
    """Call every contract method once."""
    folder = str(root / "folder")
    await transport.mkdir(folder)
    await transport.write_bytes(folder + "/a", b"a")
    assert await transport.read_bytes(folder + "/a") == b"a"
    assert await transport.listdir(folder) == ["a"]
    assert list(await transport.listdir_with_attributes(folder)) == ["a"]
    assert (await transport.stat(folder + "/a", follow_symlinks=False)).size == 1
    assert (
        await transport.exists(folder)
        and await transport.isdir(folder)
        and await transport.isfile(folder + "/a")
    )
    await transport.put(root / "local", folder + "/put")
    await transport.get(folder + "/put", root / "got")
    await transport.puttree(root / "tree", folder + "/tree")
    await transport.gettree(folder + "/tree", root / "tree-back")
    await transport.copy(folder + "/a", folder + "/b")
    await transport.rename(folder + "/b", folder + "/c")
    await transport.chmod(folder + "/c", 0o600)
    await transport.symlink("c", folder + "/link")
    await transport.remove(folder + "/link")
    assert (await transport.exec_command_wait("cat", stdin="in", workdir=folder)).stdout == "in"
    assert await transport.whoami()
    await transport.rmtree(folder)


def prepare(root: Path) -> None:
    (root / "local").write_bytes(b"local")
    (root / "tree").mkdir()
    (root / "tree" / "file").write_bytes(b"f")


async def test_as_async_runs_every_call_in_one_thread_of_its_own(tmp_path: Path) -> None:
    prepare(tmp_path)
    first, second = RecordingBlocking(), RecordingBlocking()
    async with as_async(first) as adapted, as_async(second) as other:
        await exercise(adapted, tmp_path)
        await other.whoami()
    contract = {
        "open", "mkdir", "write_bytes", "read_bytes", "listdir", "listdir_with_attributes", "stat", "exists",
        "isdir", "isfile", "put", "get", "puttree", "gettree", "copy", "rename", "chmod", "symlink", "remove",
        "exec_command_wait", "whoami", "rmtree", "close",
    }  # fmt: skip
    assert set(first.calls) == contract
    assert len(first.threads) == 1 and len(second.threads) == 1
    assert first.threads != second.threads
    assert threading.get_ident() not in first.threads


async def test_as_async_serialises_calls_and_keeps_the_loop_free(tmp_path: Path) -> None:
    recording = RecordingBlocking()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with as_async(recording) as adapted:
        ticking = asyncio.create_task(ticker())
        results = await asyncio.gather(*(adapted.exec_command_wait(f"sleep 0.1; echo {i}") for i in range(4)))
        ticking.cancel()
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n", "3\n"]
    assert recording.most_running == 1  # one call at a time: paramiko's SFTP is not thread-safe
    assert ticks >= 10  # the loop kept running while the four calls waited in the thread


async def test_as_async_close_breaks_a_hanging_call() -> None:
    hanging = HangingBlocking()
    adapted = as_async(hanging)
    await adapted.open()
    call = asyncio.create_task(adapted.exec_command_wait("never answered"))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(adapted.close(), 5)
    with pytest.raises(TransportClosedError):
        await asyncio.wait_for(call, 5)
    assert not adapted.is_open


async def test_as_async_survives_a_cancelled_caller(tmp_path: Path) -> None:
    async with as_async(RecordingBlocking()) as adapted:
        slow = asyncio.create_task(adapted.exec_command_wait("sleep 0.2"))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert (await adapted.exec_command_wait("echo after")).stdout == "after\n"


async def test_as_async_passes_errors_through(tmp_path: Path) -> None:
    async with as_async(RecordingBlocking()) as adapted:
        with pytest.raises(PathNotFoundError) as caught:
            await adapted.read_bytes(str(tmp_path / "missing"))
    assert (caught.value.operation, caught.value.path) == ("read_bytes", str(tmp_path / "missing"))
    assert isinstance(adapted, AsyncAdapter)


def run_blocking_script(root: Path) -> list[object]:
    with as_blocking(LocalTransport()) as transport:
        transport.write_bytes(str(root / "data"), b"blocking")
        seen: list[object] = [transport.is_open, transport.read_bytes(str(root / "data"))]
        seen.append(transport.exec_command_wait("echo $((1 + 1))").stdout)
        with pytest.raises(PathNotFoundError):
            transport.stat(str(root / "missing"))
    seen.append(transport.is_open)
    return seen


def test_as_blocking_from_a_plain_thread(tmp_path: Path) -> None:
    assert run_blocking_script(tmp_path) == [True, b"blocking", "2\n", False]


async def test_as_blocking_inside_a_running_loop_uses_its_own(tmp_path: Path) -> None:
    caller_loop = asyncio.get_running_loop()
    loops: list[asyncio.AbstractEventLoop] = []

    class LoopRecording(LocalTransport):
        async def whoami(self) -> str:
            loops.append(asyncio.get_running_loop())
            return await super().whoami()

    transport = as_blocking(LoopRecording())
    transport.open()  # a plain call from async code: Jupyter's situation
    assert transport.whoami()
    transport.close()
    assert loops == [background_loop()] and loops[0] is not caller_loop
    assert run_blocking_script(tmp_path) == [True, b"blocking", "2\n", False]


def test_as_blocking_refuses_to_deadlock_on_its_own_loop() -> None:
    transport = as_blocking(LocalTransport())

    async def call_from_the_loop_thread() -> str:
        return transport.whoami()

    future = asyncio.run_coroutine_threadsafe(call_from_the_loop_thread(), background_loop())
    with pytest.raises(RuntimeError, match="would wait for itself"):
        future.result(timeout=10)


def test_as_blocking_over_ssh(sshd: LoopbackSshd, tmp_path: Path) -> None:
    with as_blocking(SshTransport(sshd.host, **sshd.transport_options())) as transport:
        transport.mkdir(str(tmp_path / "remote"))
        transport.write_bytes(str(tmp_path / "remote" / "f"), b"over ssh")
        assert transport.listdir(str(tmp_path / "remote")) == ["f"]
        assert transport.exec_command_wait("cat f", workdir=str(tmp_path / "remote")).stdout == "over ssh"
        transport.get(str(tmp_path / "remote" / "f"), tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"over ssh"


def test_as_blocking_in_a_jupyter_kernel(tmp_path: Path) -> None:
    """The real thing: a notebook cell (the kernel's loop is running) calls the blocking view."""
    cells = [
        "import asyncio\nawait asyncio.sleep(0)\nrunning = asyncio.get_running_loop().is_running()",
        "from plait.transports import as_blocking\nfrom plait.transports.local import LocalTransport\n"
        "transport = as_blocking(LocalTransport())\ntransport.open()\n"
        f"transport.write_bytes({str(tmp_path / 'nb')!r}, b'from a notebook')\n"
        f"print(running, transport.read_bytes({str(tmp_path / 'nb')!r}), "
        "transport.exec_command_wait('echo hi').stdout.strip())\ntransport.close()",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    started = time.monotonic()
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    assert time.monotonic() - started < 60
    assert notebook.cells[1].outputs[0]["text"] == "True b'from a notebook' hi\n"
