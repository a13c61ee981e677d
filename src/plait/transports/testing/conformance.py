"""The conformance suite: every promise of the transport contract, as pytest tests.

A plugin author inherits :class:`TransportConformance` in a test class and
provides one fixture, ``transport``, that yields an *open* async transport
(wrap a blocking plugin with :func:`plait.transports.as_async`)::

    import pytest
    from plait.transports import as_async
    from plait.transports.testing import TransportConformance
    from my_plugin import MyTransport

    class TestMyTransport(TransportConformance):
        @pytest.fixture
        async def transport(self):
            async with as_async(MyTransport("cluster.example.org")) as transport:
                yield transport

The suite needs pytest-asyncio (``asyncio_mode = "auto"`` in the pytest
configuration).  Optional fixtures to override:

* ``remote_root`` — a fresh, empty remote folder for one test.  The default
  runs ``mktemp -d`` through the transport and removes the folder afterwards.
* ``unwritable_folder`` — a remote folder the remote user cannot create
  anything in.  The default makes a folder with mode ``0o555``; when the
  remote user is root, whom permission bits do not stop, it uses ``/sys``
  (Linux refuses new files there even to root) or skips with the reason.

Local files are created under pytest's ``tmp_path``.  Nothing here assumes
the remote folder is visible locally: every check goes through the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import shlex
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ..adapters import as_async
from ..contract import BlockingTransport, FileAttributes, Transport
from ..errors import (
    IsADirectoryTransportError,
    NotADirectoryTransportError,
    PathExistsError,
    PathNotFoundError,
    PermissionDeniedError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)

__all__ = ["AWKWARD_NAMES", "EngineConfiguration", "TransportConformance", "build_transport"]

#: file names that break naive quoting: spaces, both quotes, non-ASCII, a
#: leading dash (an option to ``cp``/``rm`` unless ``--`` is used) and shell
#: syntax that must never run.
AWKWARD_NAMES = [
    "with space",
    "quote'single",
    'quote"double',
    "ünïcødé-文件-🙂",
    "-leading-dash",
    "$(touch plait-injected)",
    "`touch plait-injected`;&|<>*?",
]
ALL_BYTES = bytes(range(256))
MiB = 1024 * 1024


def _snapshot(root: Path) -> dict[str, Any]:
    """A comparable picture of a local tree: kinds, contents, executable bits, link targets."""
    picture: dict[str, Any] = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                picture[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                picture[rel] = ("folder",)
            else:
                picture[rel] = ("file", path.read_bytes(), bool(path.stat().st_mode & stat.S_IXUSR))
        folders[:] = [f for f in folders if not (Path(folder) / f).is_symlink()]
    return picture


def _make_local_tree(root: Path) -> Path:
    """Nested folders, an empty folder, awkward names, binary data, an executable and three kinds of link."""
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "empty-folder").mkdir()
    (root / "top.bin").write_bytes(ALL_BYTES)
    (root / "nested" / "deeper" / "deepest.txt").write_text("deep\n")
    for index, name in enumerate(AWKWARD_NAMES):
        (root / "nested" / name).write_bytes(f"{index}: {name}\n".encode())
    script = root / "run.sh"
    script.write_text("#!/bin/bash\necho ran\n")
    script.chmod(0o755)
    (root / "links").mkdir()
    os.symlink("../top.bin", root / "links" / "to-file")
    os.symlink("../nested", root / "links" / "to-folder")
    os.symlink("../does-not-exist", root / "links" / "dangling")
    return root


async def _raises(
    error_class: type[TransportError],
    call: Awaitable[object],
    *,
    transport: Transport,
    operation: str,
    path: str,
) -> TransportError:
    """Await ``call``, expect ``error_class`` naming the host, operation and path."""
    with pytest.raises(error_class) as caught:
        await call
    error = caught.value
    assert error.host == transport.hostname, f"error names host {error.host!r}"
    assert error.operation == operation, f"error names operation {error.operation!r}"
    assert error.path == path, f"error names path {error.path!r}"
    assert transport.hostname in str(error) and path in str(error)
    return error


async def _processes_with(transport: Transport, marker: str) -> list[int]:
    """Ids of the remote processes with ``marker`` (digits and one dot) in their command line.

    Searched with a bracketed pattern, so the search itself never matches.
    """
    if not await transport.isdir("/proc/self"):
        pytest.skip("the remote side has no /proc to look for surviving processes in")
    pattern = shlex.quote(marker.replace(".", "[.]"))
    found = await transport.exec_command_wait(f"grep -l -a -e {pattern} /proc/[0-9]*/cmdline 2>/dev/null")
    return sorted(int(line.split("/")[2]) for line in found.stdout.split())


async def _kill_processes_with(transport: Transport, marker: str) -> None:
    """Clean up after a plugin that left the processes of a timed-out command running."""
    survivors = await _processes_with(transport, marker)
    if survivors:
        await transport.exec_command_wait("kill -9 " + " ".join(map(str, survivors)) + " 2>/dev/null")


@dataclass(frozen=True)
class EngineConfiguration:
    """What the engine builds a transport from: the plugin class, the computer's host and options.

    ``options`` are the computer's ``configure`` options (``plait computer
    configure``), passed as keyword arguments.
    """

    transport_class: type[Transport] | type[BlockingTransport]
    hostname: str
    options: dict[str, Any] = field(default_factory=dict)


def build_transport(configuration: EngineConfiguration) -> Transport:
    """Build an unopened transport exactly as the engine does.

    ``Computer.get_transport`` calls ``cls(hostname=..., **options)`` and the
    engine (the pool, the CLI, the upload and retrieve steps) wraps a
    blocking plugin with :func:`plait.transports.as_async`.
    """
    factory: Callable[..., Transport | BlockingTransport] = configuration.transport_class
    made = factory(hostname=configuration.hostname, **configuration.options)
    return as_async(made)


class _LoopLag:
    """The longest gap between the ticks of a task that asks to wake every millisecond."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def _tick_now(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self._last)
        self._last = now

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            self._tick_now()

    async def __aenter__(self) -> _LoopLag:
        self._task = asyncio.ensure_future(self._tick())
        await asyncio.sleep(0)  # let the ticker start before the measured call
        self._last = time.monotonic()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._tick_now()  # a call that blocked after its last await shows here
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class TransportConformance:
    """Mixin of tests that every transport plugin must pass.  See the module docstring."""

    #: size of the "large" file used in transfer tests.
    large_file_size: int = 8 * MiB
    #: operations started at once in the concurrency test.
    concurrent_operations: int = 50
    #: seconds a timed-out command may take to return (and its processes to be gone) after its time-out.
    timeout_grace: float = 5.0
    #: the longest the event loop may stall during one async call, in seconds.
    max_loop_lag: float = 0.25

    # -- fixtures --------------------------------------------------------------
    @pytest_asyncio.fixture
    async def remote_root(self, transport: Transport) -> AsyncIterator[str]:
        result = await transport.exec_command_wait("mktemp -d")
        assert result.returncode == 0, result.stderr
        path = result.stdout.strip()
        yield path
        if transport.is_open:
            await transport.exec_command_wait(
                f"chmod -R u+rwx {shlex.quote(path)}; rm -rf {shlex.quote(path)}"
            )

    @pytest_asyncio.fixture
    async def unwritable_folder(self, transport: Transport, remote_root: str) -> AsyncIterator[str]:
        if await transport.whoami() != "root":
            folder = posixpath.join(remote_root, "read-only")
            await transport.mkdir(folder)
            await transport.chmod(folder, 0o555)
            yield folder
            await transport.chmod(folder, 0o755)
        elif await transport.isdir("/sys/kernel"):
            yield "/sys"  # sysfs: no new files or folders, not even for root
        else:
            pytest.skip(
                "the remote user is root and no folder refuses root here; override `unwritable_folder`"
            )

    @pytest_asyncio.fixture
    async def local_view(self, transport: Transport, remote_root: str) -> Path:
        """The local folder where ``remote_root`` can be read directly, or skip.

        The default probes: a file written through the transport must appear
        with the same content under the same path on this machine (true for
        ``local`` and for SSH to loopback).  Override it for a plugin whose
        remote side is mounted elsewhere locally.
        """
        token = os.urandom(8).hex().encode()
        await transport.write_bytes(posixpath.join(remote_root, ".plait-probe"), token)
        probe = Path(remote_root) / ".plait-probe"
        try:
            visible = probe.read_bytes() == token
        except OSError:
            visible = False
        if not visible:
            pytest.skip("the remote folder is not visible on this machine; override `local_view`")
        await transport.remove(posixpath.join(remote_root, ".plait-probe"))
        return Path(remote_root)

    @pytest.fixture
    def engine_configuration(self) -> EngineConfiguration:
        """How the engine would build this plugin; override it to run the constructor test."""
        pytest.skip("override `engine_configuration` to check the constructor the engine calls")

    # -- lifecycle -------------------------------------------------------------
    async def test_open_transport_says_so(self, transport: Transport) -> None:
        assert transport.is_open
        assert isinstance(transport.hostname, str) and transport.hostname

    async def test_built_as_the_engine_builds_it(self, engine_configuration: EngineConfiguration) -> None:
        cls = engine_configuration.transport_class
        try:
            transport = build_transport(engine_configuration)
        except TypeError as error:
            pytest.fail(
                f"{cls.__qualname__}(hostname=..., **options) is how the engine builds a transport; "
                f"options {sorted(engine_configuration.options)} were refused: {error}"
            )
        assert isinstance(transport, Transport)
        assert transport.hostname == engine_configuration.hostname, "the constructor must keep `hostname`"
        assert not transport.is_open, "the constructor must not connect; open() does"
        async with transport:
            assert transport.is_open
            assert await transport.whoami()
        assert not transport.is_open

    async def test_closed_transport_refuses_every_method(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        (tmp_path / "file").write_bytes(b"x")
        (tmp_path / "folder").mkdir()
        path = posixpath.join(remote_root, "x")
        await transport.close()
        assert not transport.is_open
        await transport.close()  # closing twice is a no-op
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "mkdir": lambda: transport.mkdir(path),
            "listdir": lambda: transport.listdir(remote_root),
            "listdir_with_attributes": lambda: transport.listdir_with_attributes(remote_root),
            "stat": lambda: transport.stat("/"),
            "exists": lambda: transport.exists(path),
            "isdir": lambda: transport.isdir(path),
            "isfile": lambda: transport.isfile(path),
            "put": lambda: transport.put(tmp_path / "file", path),
            "get": lambda: transport.get(path, tmp_path / "back"),
            "puttree": lambda: transport.puttree(tmp_path / "folder", path),
            "gettree": lambda: transport.gettree(remote_root, tmp_path / "back-tree"),
            "read_bytes": lambda: transport.read_bytes(path),
            "write_bytes": lambda: transport.write_bytes(path, b"x"),
            "copy": lambda: transport.copy(path, path + ".copy"),
            "remove": lambda: transport.remove(path),
            "rmtree": lambda: transport.rmtree(path),
            "rename": lambda: transport.rename(path, path + ".moved"),
            "chmod": lambda: transport.chmod(path, 0o600),
            "symlink": lambda: transport.symlink("target", path),
            "exec_command_wait": lambda: transport.exec_command_wait("true"),
            "whoami": lambda: transport.whoami(),
        }
        still_working = []
        for name, call in calls.items():
            try:
                await call()
            except TransportClosedError as error:
                assert error.host == transport.hostname, f"{name}: error names host {error.host!r}"
                assert not error.retryable, f"{name}: a closed transport is not worth a retry"
            except Exception as error:  # reported below with the method's name
                still_working.append(f"{name} raised {type(error).__name__}: {error}")
            else:
                still_working.append(f"{name} still works")
        assert not still_working, "after close(): " + "; ".join(still_working)

    # -- folders ---------------------------------------------------------------
    async def test_mkdir(self, transport: Transport, remote_root: str) -> None:
        folder = posixpath.join(remote_root, "new")
        await transport.mkdir(folder)
        assert await transport.isdir(folder)
        await transport.mkdir(folder, exist_ok=True)
        await _raises(
            PathExistsError, transport.mkdir(folder), transport=transport, operation="mkdir", path=folder
        )

    async def test_mkdir_on_a_file_fails_even_with_exist_ok(
        self, transport: Transport, remote_root: str
    ) -> None:
        path = posixpath.join(remote_root, "file")
        await transport.write_bytes(path, b"x")
        await _raises(
            PathExistsError,
            transport.mkdir(path, exist_ok=True),
            transport=transport,
            operation="mkdir",
            path=path,
        )

    async def test_mkdir_parents(self, transport: Transport, remote_root: str) -> None:
        folder = posixpath.join(remote_root, "a", "b", "c")
        await _raises(
            PathNotFoundError, transport.mkdir(folder), transport=transport, operation="mkdir", path=folder
        )
        await transport.mkdir(folder, parents=True)
        assert await transport.isdir(folder)
        await transport.mkdir(folder, parents=True, exist_ok=True)
        with pytest.raises(PathExistsError):
            await transport.mkdir(folder, parents=True)

    async def test_listdir(self, transport: Transport, remote_root: str) -> None:
        names = ["b.out", "a.out", "c.txt", *AWKWARD_NAMES]
        for name in names:
            await transport.write_bytes(posixpath.join(remote_root, name), b"")
        await transport.mkdir(posixpath.join(remote_root, "folder.out"))
        assert await transport.listdir(remote_root) == sorted([*names, "folder.out"])
        assert await transport.listdir(remote_root, "*.out") == ["a.out", "b.out", "folder.out"]
        assert await transport.listdir(remote_root, "*.none") == []
        assert await transport.listdir(posixpath.join(remote_root, "folder.out")) == []

    async def test_listdir_errors(self, transport: Transport, remote_root: str) -> None:
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.listdir(missing),
            transport=transport,
            operation="listdir",
            path=missing,
        )
        file = posixpath.join(remote_root, "file")
        await transport.write_bytes(file, b"x")
        await _raises(
            NotADirectoryTransportError,
            transport.listdir(file),
            transport=transport,
            operation="listdir",
            path=file,
        )
        with pytest.raises(PathNotFoundError):
            await transport.listdir_with_attributes(missing)

    async def test_listdir_with_attributes_does_not_follow_links(
        self, transport: Transport, remote_root: str
    ) -> None:
        await transport.write_bytes(posixpath.join(remote_root, "data"), b"12345")
        await transport.mkdir(posixpath.join(remote_root, "folder"))
        await transport.symlink("data", posixpath.join(remote_root, "link"))
        found = await transport.listdir_with_attributes(remote_root)
        assert list(found) == ["data", "folder", "link"]
        assert all(isinstance(attrs, FileAttributes) for attrs in found.values())
        assert found["data"].is_file and found["data"].size == 5
        assert found["folder"].is_dir
        assert found["link"].is_symlink and not found["link"].is_file
        assert list(await transport.listdir_with_attributes(remote_root, "l*")) == ["link"]

    # -- queries ---------------------------------------------------------------
    async def test_stat(self, transport: Transport, remote_root: str) -> None:
        path = posixpath.join(remote_root, "data")
        await transport.write_bytes(path, ALL_BYTES)
        await transport.chmod(path, 0o640)
        attrs = await transport.stat(path)
        assert attrs.is_file and not attrs.is_dir and not attrs.is_symlink
        assert attrs.size == 256
        assert attrs.permissions == 0o640
        assert abs(attrs.mtime - time.time()) < 24 * 3600
        folder = await transport.stat(remote_root)
        assert folder.is_dir and not folder.is_file

    async def test_stat_follows_links_unless_told(self, transport: Transport, remote_root: str) -> None:
        await transport.write_bytes(posixpath.join(remote_root, "data"), b"12345")
        link = posixpath.join(remote_root, "link")
        await transport.symlink("data", link)
        followed = await transport.stat(link)
        assert followed.is_file and followed.size == 5
        assert (await transport.stat(link, follow_symlinks=False)).is_symlink
        dangling = posixpath.join(remote_root, "dangling")
        await transport.symlink("nothing-here", dangling)
        await _raises(
            PathNotFoundError, transport.stat(dangling), transport=transport, operation="stat", path=dangling
        )
        assert (await transport.stat(dangling, follow_symlinks=False)).is_symlink

    async def test_stat_missing_names_host_operation_path(
        self, transport: Transport, remote_root: str
    ) -> None:
        missing = posixpath.join(remote_root, "missing")
        error = await _raises(
            PathNotFoundError, transport.stat(missing), transport=transport, operation="stat", path=missing
        )
        assert not error.retryable

    async def test_exists_isdir_isfile(self, transport: Transport, remote_root: str) -> None:
        file = posixpath.join(remote_root, "file")
        folder = posixpath.join(remote_root, "folder")
        await transport.write_bytes(file, b"x")
        await transport.mkdir(folder)
        await transport.symlink("file", posixpath.join(remote_root, "file-link"))
        await transport.symlink("folder", posixpath.join(remote_root, "folder-link"))
        await transport.symlink("nothing", posixpath.join(remote_root, "dangling"))
        expected = {
            "file": (True, False, True),
            "folder": (True, True, False),
            "file-link": (True, False, True),
            "folder-link": (True, True, False),
            "dangling": (True, False, False),
            "missing": (False, False, False),
        }
        for name, answers in expected.items():
            path = posixpath.join(remote_root, name)
            found = (await transport.exists(path), await transport.isdir(path), await transport.isfile(path))
            assert found == answers, name

    # -- transfers -------------------------------------------------------------
    async def test_put_get_all_byte_values(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        source = tmp_path / "source.bin"
        source.write_bytes(ALL_BYTES * 3)
        remote = posixpath.join(remote_root, "copy.bin")
        await transport.put(source, remote)
        assert await transport.read_bytes(remote) == ALL_BYTES * 3
        await transport.get(remote, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == ALL_BYTES * 3
        await transport.get(remote, str(tmp_path / "back-str.bin"))  # str paths work too
        assert (tmp_path / "back-str.bin").read_bytes() == ALL_BYTES * 3

    async def test_put_and_get_keep_the_executable_bit(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        script = tmp_path / "job.sh"
        script.write_text("#!/bin/bash\necho ran\n")
        script.chmod(0o755)
        remote = posixpath.join(remote_root, "job.sh")
        await transport.put(script, remote)
        assert (await transport.stat(remote)).permissions & 0o111
        result = await transport.exec_command_wait("./job.sh", workdir=remote_root)
        assert (result.returncode, result.stdout) == (0, "ran\n")
        await transport.get(remote, tmp_path / "back.sh")
        assert os.access(tmp_path / "back.sh", os.X_OK)

    async def test_put_overwrites_and_leaves_no_temporary_files(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        remote = posixpath.join(remote_root, "target")
        await transport.write_bytes(remote, b"old content that is longer")
        (tmp_path / "new").write_bytes(b"new")
        await transport.put(tmp_path / "new", remote)
        assert await transport.read_bytes(remote) == b"new"
        await transport.write_bytes(remote, b"newest")
        assert await transport.read_bytes(remote) == b"newest"
        assert await transport.listdir(remote_root) == ["target"]

    async def test_put_errors(self, transport: Transport, remote_root: str, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):  # a local problem stays a local error
            await transport.put(tmp_path / "missing", posixpath.join(remote_root, "x"))
        (tmp_path / "data").write_bytes(b"data")
        into_missing = posixpath.join(remote_root, "no-such-folder", "x")
        await _raises(
            PathNotFoundError,
            transport.put(tmp_path / "data", into_missing),
            transport=transport,
            operation="put",
            path=into_missing,
        )
        folder = posixpath.join(remote_root, "folder")
        await transport.mkdir(folder)
        await _raises(
            IsADirectoryTransportError,
            transport.put(tmp_path / "data", folder),
            transport=transport,
            operation="put",
            path=folder,
        )
        assert await transport.listdir(remote_root) == ["folder"]
        assert await transport.listdir(folder) == []

    async def test_get_errors(self, transport: Transport, remote_root: str, tmp_path: Path) -> None:
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.get(missing, tmp_path / "x"),
            transport=transport,
            operation="get",
            path=missing,
        )
        await _raises(
            IsADirectoryTransportError,
            transport.get(remote_root, tmp_path / "x"),
            transport=transport,
            operation="get",
            path=remote_root,
        )
        assert not (tmp_path / "x").exists()

    async def test_large_file(self, transport: Transport, remote_root: str, tmp_path: Path) -> None:
        data = os.urandom(self.large_file_size)
        (tmp_path / "large").write_bytes(data)
        remote = posixpath.join(remote_root, "large")
        await transport.put(tmp_path / "large", remote)
        assert (await transport.stat(remote)).size == len(data)
        await transport.get(remote, tmp_path / "large-back")
        assert (tmp_path / "large-back").read_bytes() == data
        assert await transport.read_bytes(remote) == data
        await transport.write_bytes(posixpath.join(remote_root, "large-2"), data)
        assert await transport.read_bytes(posixpath.join(remote_root, "large-2")) == data

    async def test_readers_never_see_a_partial_file(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        remote = posixpath.join(remote_root, "watched")
        await transport.write_bytes(remote, b"old")
        (tmp_path / "large").write_bytes(os.urandom(self.large_file_size))
        upload = asyncio.ensure_future(transport.put(tmp_path / "large", remote))
        sizes = set()
        while not upload.done():
            sizes.add((await transport.stat(remote)).size)
        await upload
        sizes.add((await transport.stat(remote)).size)
        assert sizes <= {3, self.large_file_size} and self.large_file_size in sizes

    @pytest.mark.parametrize("method", ["put", "write_bytes"])
    async def test_an_independent_reader_never_sees_a_partial_file(
        self, transport: Transport, remote_root: str, local_view: Path, tmp_path: Path, method: str
    ) -> None:
        # A thread reads the target straight from the file system while the
        # write is in flight: not through the transport, which may serialise
        # its own calls and so never let a read in mid-write.
        data = os.urandom(self.large_file_size)
        (tmp_path / "large").write_bytes(data)
        remote = posixpath.join(remote_root, "watched")
        await transport.write_bytes(remote, b"old")
        target = local_view / "watched"
        seen: set[int] = set()
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                with contextlib.suppress(FileNotFoundError):
                    seen.add(target.stat().st_size)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            if method == "put":
                await transport.put(tmp_path / "large", remote)
            else:
                await transport.write_bytes(remote, data)
        finally:
            stop.set()
            await asyncio.to_thread(watcher.join)
        partial = sorted(seen - {3, len(data)})
        assert not partial, f"{method} let a reader see the file at sizes {partial[:5]} of {len(data)}"
        assert target.read_bytes() == data

    async def test_read_and_write_bytes(self, transport: Transport, remote_root: str) -> None:
        path = posixpath.join(remote_root, "data")
        await transport.write_bytes(path, b"")
        assert await transport.read_bytes(path) == b""
        await transport.write_bytes(path, ALL_BYTES)
        assert await transport.read_bytes(path) == ALL_BYTES
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.read_bytes(missing),
            transport=transport,
            operation="read_bytes",
            path=missing,
        )
        await _raises(
            IsADirectoryTransportError,
            transport.read_bytes(remote_root),
            transport=transport,
            operation="read_bytes",
            path=remote_root,
        )
        into_missing = posixpath.join(missing, "data")
        await _raises(
            PathNotFoundError,
            transport.write_bytes(into_missing, b"x"),
            transport=transport,
            operation="write_bytes",
            path=into_missing,
        )
        folder = posixpath.join(remote_root, "folder")
        await transport.mkdir(folder)
        await _raises(
            IsADirectoryTransportError,
            transport.write_bytes(folder, b"x"),
            transport=transport,
            operation="write_bytes",
            path=folder,
        )
        assert await transport.listdir(remote_root) == ["data", "folder"]

    async def test_puttree_and_gettree_round_trip(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        source = _make_local_tree(tmp_path / "source")
        remote = posixpath.join(remote_root, "tree")
        await transport.puttree(source, remote)
        assert (
            await transport.stat(posixpath.join(remote, "links", "to-folder"), follow_symlinks=False)
        ).is_symlink
        assert await transport.listdir(posixpath.join(remote, "empty-folder")) == []
        assert await transport.read_bytes(posixpath.join(remote, "links", "to-file")) == ALL_BYTES
        await transport.gettree(remote, tmp_path / "back")
        assert _snapshot(tmp_path / "back") == _snapshot(source)

    async def test_puttree_merges_into_an_existing_folder(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        source = _make_local_tree(tmp_path / "source")
        remote = posixpath.join(remote_root, "tree")
        await transport.mkdir(remote)
        await transport.write_bytes(posixpath.join(remote, "top.bin"), b"stale")
        await transport.write_bytes(posixpath.join(remote, "extra"), b"kept")
        await transport.puttree(source, remote)
        await transport.puttree(source, remote)  # again: links and files are replaced, not duplicated
        assert await transport.read_bytes(posixpath.join(remote, "top.bin")) == ALL_BYTES
        assert await transport.read_bytes(posixpath.join(remote, "extra")) == b"kept"
        await transport.gettree(remote, tmp_path / "back")
        expected = _snapshot(source)
        expected["extra"] = ("file", b"kept", False)
        assert _snapshot(tmp_path / "back") == expected

    async def test_tree_errors(self, transport: Transport, remote_root: str, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            await transport.puttree(tmp_path / "missing", posixpath.join(remote_root, "tree"))
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.gettree(missing, tmp_path / "back"),
            transport=transport,
            operation="gettree",
            path=missing,
        )
        file = posixpath.join(remote_root, "file")
        await transport.write_bytes(file, b"x")
        await _raises(
            NotADirectoryTransportError,
            transport.gettree(file, tmp_path / "back"),
            transport=transport,
            operation="gettree",
            path=file,
        )

    # -- remote-side file operations -------------------------------------------
    async def test_copy_file(self, transport: Transport, remote_root: str) -> None:
        source = posixpath.join(remote_root, "source")
        await transport.write_bytes(source, ALL_BYTES)
        await transport.chmod(source, 0o750)
        destination = posixpath.join(remote_root, "destination")
        await transport.copy(source, destination)
        assert await transport.read_bytes(destination) == ALL_BYTES
        assert (await transport.stat(destination)).permissions == 0o750
        await transport.write_bytes(source, b"changed")
        await transport.copy(source, destination)  # overwrites
        assert await transport.read_bytes(destination) == b"changed"

    async def test_copy_tree_keeps_links_and_merges(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        source = _make_local_tree(tmp_path / "source")
        remote = posixpath.join(remote_root, "tree")
        await transport.puttree(source, remote)
        destination = posixpath.join(remote_root, "copy")
        await transport.mkdir(destination)
        await transport.write_bytes(posixpath.join(destination, "extra"), b"kept")
        await transport.copy(remote, destination)
        assert (
            await transport.stat(posixpath.join(destination, "links", "to-file"), follow_symlinks=False)
        ).is_symlink
        await transport.gettree(destination, tmp_path / "back")
        expected = _snapshot(source)
        expected["extra"] = ("file", b"kept", False)
        assert _snapshot(tmp_path / "back") == expected

    async def test_copy_link_copies_the_link(self, transport: Transport, remote_root: str) -> None:
        await transport.write_bytes(posixpath.join(remote_root, "data"), b"x")
        await transport.symlink("data", posixpath.join(remote_root, "link"))
        await transport.copy(posixpath.join(remote_root, "link"), posixpath.join(remote_root, "link-copy"))
        assert (
            await transport.stat(posixpath.join(remote_root, "link-copy"), follow_symlinks=False)
        ).is_symlink

    async def test_copy_missing_source(self, transport: Transport, remote_root: str) -> None:
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.copy(missing, posixpath.join(remote_root, "x")),
            transport=transport,
            operation="copy",
            path=missing,
        )

    async def test_remove(self, transport: Transport, remote_root: str) -> None:
        data = posixpath.join(remote_root, "data")
        link = posixpath.join(remote_root, "link")
        await transport.write_bytes(data, b"x")
        await transport.symlink("data", link)
        await transport.remove(link)
        assert await transport.listdir(remote_root) == ["data"]
        await transport.remove(data)
        assert await transport.listdir(remote_root) == []
        await _raises(
            PathNotFoundError, transport.remove(data), transport=transport, operation="remove", path=data
        )
        folder = posixpath.join(remote_root, "folder")
        await transport.mkdir(folder)
        await _raises(
            IsADirectoryTransportError,
            transport.remove(folder),
            transport=transport,
            operation="remove",
            path=folder,
        )
        assert await transport.isdir(folder)

    async def test_rmtree_does_not_follow_links(self, transport: Transport, remote_root: str) -> None:
        outside = posixpath.join(remote_root, "outside")
        await transport.mkdir(outside)
        await transport.write_bytes(posixpath.join(outside, "precious"), b"keep me")
        tree = posixpath.join(remote_root, "tree")
        await transport.mkdir(posixpath.join(tree, "a", "b"), parents=True)
        await transport.write_bytes(posixpath.join(tree, "a", "b", "file"), b"x")
        await transport.symlink(outside, posixpath.join(tree, "a", "link-out"))
        await transport.rmtree(tree)
        assert await transport.listdir(remote_root) == ["outside"]
        assert await transport.read_bytes(posixpath.join(outside, "precious")) == b"keep me"

    async def test_rmtree_errors(self, transport: Transport, remote_root: str) -> None:
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.rmtree(missing),
            transport=transport,
            operation="rmtree",
            path=missing,
        )
        file = posixpath.join(remote_root, "file")
        await transport.write_bytes(file, b"x")
        await _raises(
            NotADirectoryTransportError,
            transport.rmtree(file),
            transport=transport,
            operation="rmtree",
            path=file,
        )
        link = posixpath.join(remote_root, "link-to-folder")
        await transport.symlink(remote_root, link)
        with pytest.raises(NotADirectoryTransportError):
            await transport.rmtree(link)
        assert await transport.isfile(file)

    async def test_rename(self, transport: Transport, remote_root: str) -> None:
        first = posixpath.join(remote_root, "first")
        second = posixpath.join(remote_root, "second")
        await transport.write_bytes(first, b"1")
        await transport.write_bytes(second, b"2")
        await transport.rename(first, second)  # replaces a file
        assert await transport.listdir(remote_root) == ["second"]
        assert await transport.read_bytes(second) == b"1"
        folder = posixpath.join(remote_root, "folder")
        await transport.mkdir(folder)
        await transport.write_bytes(posixpath.join(folder, "inside"), b"in")
        await transport.rename(folder, posixpath.join(remote_root, "moved"))
        assert await transport.read_bytes(posixpath.join(remote_root, "moved", "inside")) == b"in"
        await _raises(
            PathNotFoundError,
            transport.rename(first, posixpath.join(remote_root, "x")),
            transport=transport,
            operation="rename",
            path=first,
        )

    async def test_chmod(self, transport: Transport, remote_root: str) -> None:
        path = posixpath.join(remote_root, "data")
        await transport.write_bytes(path, b"x")
        for mode in (0o600, 0o755, 0o640):
            await transport.chmod(path, mode)
            assert (await transport.stat(path)).permissions == mode
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.chmod(missing, 0o600),
            transport=transport,
            operation="chmod",
            path=missing,
        )

    async def test_symlink(self, transport: Transport, remote_root: str) -> None:
        link = posixpath.join(remote_root, "link")
        await transport.symlink("not/there/yet", link)  # the target need not exist
        assert (await transport.stat(link, follow_symlinks=False)).is_symlink
        result = await transport.exec_command_wait(f"readlink {shlex.quote(link)}")
        assert result.stdout == "not/there/yet\n"
        await _raises(
            PathExistsError,
            transport.symlink("other", link),
            transport=transport,
            operation="symlink",
            path=link,
        )

    @pytest.mark.parametrize("name", AWKWARD_NAMES)
    async def test_awkward_names_everywhere(
        self, transport: Transport, remote_root: str, tmp_path: Path, name: str
    ) -> None:
        folder = posixpath.join(remote_root, name)
        await transport.mkdir(folder)
        path = posixpath.join(folder, name)
        await transport.write_bytes(path, name.encode())
        (tmp_path / "local").write_bytes(b"put")
        await transport.put(tmp_path / "local", path + ".put")
        await transport.get(path, tmp_path / name)
        assert (tmp_path / name).read_bytes() == name.encode()
        await transport.copy(path, path + ".copy")
        await transport.rename(path + ".copy", path + ".moved")
        await transport.symlink(name, path + ".link")
        await transport.copy(folder, folder + ".tree")
        assert await transport.listdir(folder + ".tree") == sorted(
            [name, name + ".link", name + ".moved", name + ".put"]
        )
        result = await transport.exec_command_wait(f"cat -- {shlex.quote(name)}; pwd", workdir=folder)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(name) and result.stdout.rstrip("\n").endswith(name)
        await transport.remove(path + ".link")
        await transport.rmtree(folder + ".tree")
        await transport.rmtree(folder)
        assert await transport.listdir(remote_root) == []
        assert not await transport.exists("plait-injected")  # nothing in a name was run by a shell

    # -- commands --------------------------------------------------------------
    async def test_exec_output_and_exit_code(self, transport: Transport) -> None:
        result = await transport.exec_command_wait("echo out; echo err >&2; exit 3")
        assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert (await transport.exec_command_wait("true")).returncode == 0

    async def test_exec_runs_the_command_line_as_given(self, transport: Transport) -> None:
        command = (
            "printf '%s|' \"a b\" 'c \"d\"' $((6 * 7)) | tr '|' '\\n'\nif [[ 1 == 1 ]]; then echo bash; fi"
        )
        result = await transport.exec_command_wait(command)
        assert result.stdout == 'a b\nc "d"\n42\nbash\n'

    async def test_exec_output_written_after_the_shell_exits_is_kept(self, transport: Transport) -> None:
        """A process the command left behind may still write to its output after the command's shell
        has exited (and an SSH server has sent the exit status): the result holds everything written
        until the output is closed, as ``bash -c`` piped locally gives it."""
        result = await transport.exec_command_wait("printf early; (sleep 0.3; printf late) & exit 3")
        assert (result.returncode, result.stdout) == (3, "earlylate")

    async def test_exec_stdin(self, transport: Transport) -> None:
        text = "line one\nünïcødé\n" * 1000
        assert (await transport.exec_command_wait("cat", stdin=text)).stdout == text
        result = await transport.exec_command_wait("od -An -v -tx1 | tr -d ' \\n'", stdin=ALL_BYTES)
        assert result.stdout == ALL_BYTES.hex()
        assert (await transport.exec_command_wait("cat")).stdout == ""  # no stdin: end of file at once

    async def test_exec_output_is_decoded_with_replacement(self, transport: Transport) -> None:
        result = await transport.exec_command_wait("printf 'caf\\xc3\\xa9 \\xff\\n'")
        assert result.stdout == "café \ufffd\n"

    async def test_exec_workdir(self, transport: Transport, remote_root: str) -> None:
        result = await transport.exec_command_wait("echo made > made.txt && ls", workdir=remote_root)
        assert (result.returncode, result.stdout) == (0, "made.txt\n")
        assert await transport.read_bytes(posixpath.join(remote_root, "made.txt")) == b"made\n"
        missing = posixpath.join(remote_root, "missing")
        await _raises(
            PathNotFoundError,
            transport.exec_command_wait("touch should-not-exist", workdir=missing),
            transport=transport,
            operation="exec_command_wait",
            path=missing,
        )
        assert await transport.listdir(remote_root) == ["made.txt"]

    async def test_exec_timeout_kills_the_whole_process_group(self, transport: Transport) -> None:
        # Two sleeps that outlive the shell unless the whole group is killed; an
        # argument no other process has marks them in /proc/*/cmdline.
        marker = f"300.{os.getpid()}{time.monotonic_ns() % 10**9:09d}"
        timeout = 0.3
        started = time.monotonic()
        command = f"sleep {marker} & sleep {marker}; wait"
        try:
            try:
                await asyncio.wait_for(
                    transport.exec_command_wait(command, timeout=timeout), timeout + self.timeout_grace
                )
            except TransportTimeoutError as error:
                assert error.retryable and error.operation == "exec_command_wait"
            except TimeoutError:
                pytest.fail(
                    f"exec_command_wait did not return within {self.timeout_grace} s after its "
                    f"{timeout} s time-out: was only the shell killed, and its children keep the output open?"
                )
            else:
                pytest.fail(
                    f"exec_command_wait({command!r}, timeout={timeout}) returned instead of timing out"
                )
            elapsed = time.monotonic() - started
            assert elapsed < timeout + self.timeout_grace, (
                f"returned {elapsed:.1f} s after a {timeout} s time-out"
            )
            survivors = await _processes_with(transport, marker)
            deadline = time.monotonic() + self.timeout_grace
            while survivors and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                survivors = await _processes_with(transport, marker)
            assert not survivors, f"processes {survivors} of the timed-out command are still running"
        finally:
            await _kill_processes_with(transport, marker)
        fast = await transport.exec_command_wait("echo quick", timeout=30)
        assert fast.stdout == "quick\n"

    async def test_whoami(self, transport: Transport) -> None:
        user = await transport.whoami()
        assert user and user == (await transport.exec_command_wait("id -un")).stdout.strip()

    # -- the event loop --------------------------------------------------------
    async def test_calls_do_not_block_the_event_loop(
        self, transport: Transport, remote_root: str, tmp_path: Path
    ) -> None:
        size = MiB
        (tmp_path / "data").write_bytes(os.urandom(size))
        remote = posixpath.join(remote_root, "data")
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "exec_command_wait": lambda: transport.exec_command_wait("sleep 0.6"),
            "put": lambda: transport.put(tmp_path / "data", remote),
            "write_bytes": lambda: transport.write_bytes(remote, os.urandom(size)),
            "read_bytes": lambda: transport.read_bytes(remote),
            "get": lambda: transport.get(remote, tmp_path / "back"),
            "stat": lambda: transport.stat(remote),
            "listdir": lambda: transport.listdir(remote_root),
            "whoami": lambda: transport.whoami(),
        }
        stalls = {}
        for name, call in calls.items():
            async with _LoopLag() as lag:
                await call()
            if lag.longest > self.max_loop_lag:
                stalls[name] = round(lag.longest, 3)
        assert not stalls, (
            f"the event loop stood still for longer than {self.max_loop_lag} s (seconds per call): {stalls}; "
            "run blocking work in a thread, or write a BlockingTransport and let as_async do it"
        )

    # -- permissions -----------------------------------------------------------
    async def test_writing_where_not_allowed_is_denied(
        self, transport: Transport, unwritable_folder: str, tmp_path: Path
    ) -> None:
        path = posixpath.join(unwritable_folder, "plait-denied")
        await _raises(
            PermissionDeniedError,
            transport.write_bytes(path, b"x"),
            transport=transport,
            operation="write_bytes",
            path=path,
        )
        await _raises(
            PermissionDeniedError, transport.mkdir(path), transport=transport, operation="mkdir", path=path
        )
        (tmp_path / "data").write_bytes(b"x")
        await _raises(
            PermissionDeniedError,
            transport.put(tmp_path / "data", path),
            transport=transport,
            operation="put",
            path=path,
        )
        assert not await transport.exists(path)

    async def test_reading_what_is_not_allowed_is_denied(
        self, transport: Transport, remote_root: str
    ) -> None:
        if await transport.whoami() == "root":
            pytest.skip("the remote user is root, whom permission bits do not stop from reading")
        path = posixpath.join(remote_root, "secret")
        await transport.write_bytes(path, b"x")
        await transport.chmod(path, 0o000)
        await _raises(
            PermissionDeniedError,
            transport.read_bytes(path),
            transport=transport,
            operation="read_bytes",
            path=path,
        )

    # -- concurrency -----------------------------------------------------------
    async def test_many_operations_at_once(self, transport: Transport, remote_root: str) -> None:
        async def one(index: int) -> str:
            path = posixpath.join(remote_root, f"file-{index:03d}")
            await transport.write_bytes(path, f"content {index}".encode())
            assert await transport.read_bytes(path) == f"content {index}".encode()
            assert (await transport.stat(path)).size == len(f"content {index}")
            if index % 5 == 0:
                result = await transport.exec_command_wait(f"cat {shlex.quote(path)}")
                assert result.stdout == f"content {index}"
            return path

        count = self.concurrent_operations
        paths = await asyncio.gather(*(one(index) for index in range(count)))
        assert await transport.listdir(remote_root) == sorted(posixpath.basename(p) for p in paths)
