"""The ``local`` transport: the computer plait itself runs on.

Every file operation runs in a worker thread (``asyncio.to_thread``), so the
event loop never waits on a disk, however slow (NFS home folders are common
on clusters).  Commands run through ``bash -c`` as asyncio subprocesses in a
session of their own, so a time-out kills the whole process group, not only
the shell.

Remote paths here are local paths; relative ones are relative to the
process's current working directory.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import os
import pwd
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ._local_files import copy_file_atomically, copy_local_tree, replace_with_symlink, temporary_sibling
from .contract import CommandResult, FileAttributes, LocalPath, Transport
from .error_mapping import map_exceptions
from .errors import PathNotFoundError, TransportClosedError, TransportTimeoutError

__all__ = ["LocalTransport"]

T = TypeVar("T")


def _attributes(result: os.stat_result) -> FileAttributes:
    return FileAttributes(
        size=result.st_size, mode=result.st_mode, mtime=result.st_mtime, uid=result.st_uid, gid=result.st_gid
    )


def _filtered(names: list[str], pattern: str | None) -> list[str]:
    if pattern is not None:
        names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    return sorted(names)


# -- the blocking bodies, run in a worker thread ------------------------------


def _mkdir(path: str, parents: bool, exist_ok: bool) -> None:
    if parents:
        os.makedirs(path, exist_ok=exist_ok)
        return
    try:
        os.mkdir(path)
    except FileExistsError:
        if not (exist_ok and os.path.isdir(path)):
            raise


def _listdir(path: str, pattern: str | None) -> list[str]:
    return _filtered(os.listdir(path), pattern)


def _listdir_with_attributes(path: str, pattern: str | None) -> dict[str, FileAttributes]:
    with os.scandir(path) as entries:
        found = {entry.name: _attributes(entry.stat(follow_symlinks=False)) for entry in entries}
    return {name: found[name] for name in _filtered(list(found), pattern)}


def _require_file(path: str) -> None:
    """Raise the contract's error unless ``path`` is a readable-as-file path."""
    if os.path.isdir(path):
        raise IsADirectoryError(21, "Is a directory", path)
    os.stat(path)  # FileNotFoundError, PermissionError


def _require_folder(path: str) -> None:
    if not os.path.isdir(path):
        os.stat(path)  # FileNotFoundError when missing
        raise NotADirectoryError(20, "Not a directory", path)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as reader:
        return reader.read()


def _write_bytes(path: str, data: bytes) -> None:
    if os.path.isdir(path):
        raise IsADirectoryError(21, "Is a directory", path)
    temporary = temporary_sibling(path, pathmod=os.path)
    try:
        with open(temporary, "xb") as writer:
            writer.write(data)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _copy(source: str, destination: str) -> None:
    """``cp -a -T`` semantics: symlinks copied as links, folders merged into an existing folder."""
    if os.path.islink(source):
        os.lstat(source)
        replace_with_symlink(os.readlink(source), destination)
    elif os.path.isdir(source):
        if os.path.lexists(destination) and not os.path.isdir(destination):
            raise NotADirectoryError(20, "Not a directory (cannot copy a folder onto it)", destination)
        shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)
    else:
        os.stat(source)  # FileNotFoundError when missing
        if os.path.isdir(destination):
            raise IsADirectoryError(21, "Is a directory (cannot copy a file onto it)", destination)
        shutil.copy2(source, destination, follow_symlinks=False)


def _transfer_in_one_trip(
    local_first: bool, first: Callable[[], object], second: Callable[[], object]
) -> Exception | None:
    """(thread) Both halves of a transfer, ``first()`` then ``second()``, in one trip to a thread.

    The local half is ``first`` when ``local_first`` (a put: check the local source, then write
    the remote path), else ``second`` (a get: check the remote path, then write the local copy).
    An error of the remote half is raised (the caller maps it to the contract's errors, as for
    any remote path); one of the local half is returned instead, for the caller to raise as it
    is (a problem on the local side is the caller's own, not the computer's).
    """
    local, remote = (first, second) if local_first else (second, first)
    if not local_first:
        remote()
    try:
        local()
    except Exception as exc:
        return exc
    if local_first:
        remote()
    return None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        raise IsADirectoryError(21, "Is a directory (use rmtree)", path)
    os.unlink(path)


def _rmtree(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        os.lstat(path)  # FileNotFoundError when missing
        raise NotADirectoryError(20, "Not a directory", path)
    shutil.rmtree(path)


class LocalTransport(Transport):
    """Reach the local computer.  See :class:`plait.transports.Transport` for the contract.

    Args:
        hostname: only used in error messages and pool keys.
    """

    plugin_name = "local"

    def __init__(self, hostname: str = "localhost") -> None:
        self.hostname = hostname
        self._open = False

    def __repr__(self) -> str:
        return f"LocalTransport(hostname={self.hostname!r})"

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Mark the transport open; there is no connection to make."""
        self._open = True

    async def close(self) -> None:
        """Mark the transport closed; later calls raise :class:`TransportClosedError`."""
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def _require_open(self, operation: str, path: str | None) -> None:
        if not self._open:
            raise TransportClosedError(
                "the transport is not open", host=self.hostname, operation=operation, path=path
            )

    async def _run(self, operation: str, path: str | None, func: Callable[..., T], *args: object) -> T:
        """Run the blocking ``func(*args)`` in a thread, mapping ``OSError`` to the contract's errors."""
        self._require_open(operation, path)
        with map_exceptions(host=self.hostname, operation=operation, path=path):
            return await asyncio.to_thread(func, *args)

    # -- folders ---------------------------------------------------------------
    async def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        await self._run("mkdir", path, _mkdir, path, parents, exist_ok)

    async def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        return await self._run("listdir", path, _listdir, path, pattern)

    async def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        return await self._run("listdir_with_attributes", path, _listdir_with_attributes, path, pattern)

    # -- queries ---------------------------------------------------------------
    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        stat_function = os.stat if follow_symlinks else os.lstat
        return _attributes(await self._run("stat", path, stat_function, path))

    async def exists(self, path: str) -> bool:
        return await self._run("exists", path, os.path.lexists, path)

    async def isdir(self, path: str) -> bool:
        return await self._run("isdir", path, os.path.isdir, path)

    async def isfile(self, path: str) -> bool:
        return await self._run("isfile", path, os.path.isfile, path)

    # -- transfers -------------------------------------------------------------
    # Each transfer is one trip to a worker thread (a thousand jobs retrieving four files each
    # made eight thousand trips, each a thread wake-up and a hand-over of the GIL).  Errors keep
    # their sides: a problem with the local path is raised as it is (FileNotFoundError...), one
    # with the remote path as the contract's error.
    async def _transfer(
        self, operation: str, remotepath: str, local_first: bool, *steps: Callable[[], object]
    ) -> None:
        local_error = await self._run(operation, remotepath, _transfer_in_one_trip, local_first, *steps)
        if local_error is not None:
            raise local_error

    async def put(self, localpath: LocalPath, remotepath: str) -> None:
        source = os.fspath(localpath)
        check = functools.partial(_require_file, source)
        await self._transfer(
            "put", remotepath, True, check, functools.partial(copy_file_atomically, source, remotepath)
        )

    async def get(self, remotepath: str, localpath: LocalPath) -> None:
        check = functools.partial(_require_file, remotepath)
        copy = functools.partial(copy_file_atomically, remotepath, localpath)
        await self._transfer("get", remotepath, False, check, copy)

    async def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        source = os.fspath(localpath)
        check = functools.partial(_require_local_folder, source)
        await self._transfer(
            "puttree", remotepath, True, check, functools.partial(copy_local_tree, source, remotepath)
        )

    async def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        check = functools.partial(_require_folder, remotepath)
        copy = functools.partial(copy_local_tree, remotepath, localpath)
        await self._transfer("gettree", remotepath, False, check, copy)

    async def read_bytes(self, path: str) -> bytes:
        return await self._run("read_bytes", path, _read_bytes, path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        await self._run("write_bytes", path, _write_bytes, path, bytes(data))

    # -- remote-side file operations -------------------------------------------
    async def copy(self, source: str, destination: str) -> None:
        self._require_open("copy", source)
        exists = await asyncio.to_thread(os.path.lexists, source)
        if not exists:
            raise PathNotFoundError(
                "No such file or directory", host=self.hostname, operation="copy", path=source
            )
        await self._run("copy", destination, _copy, source, destination)

    async def remove(self, path: str) -> None:
        await self._run("remove", path, _remove, path)

    async def rmtree(self, path: str) -> None:
        await self._run("rmtree", path, _rmtree, path)

    async def rename(self, source: str, destination: str) -> None:
        await self._run("rename", source, os.replace, source, destination)

    async def chmod(self, path: str, mode: int) -> None:
        await self._run("chmod", path, os.chmod, path, mode)

    async def symlink(self, target: str, link_path: str) -> None:
        await self._run("symlink", link_path, os.symlink, target, link_path)

    # -- commands --------------------------------------------------------------
    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``bash -c command``; on time-out kill its whole process group.

        With ``stdin=None`` the command's standard input is ``/dev/null``.
        """
        operation = "exec_command_wait"
        self._require_open(operation, workdir)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        loop = asyncio.get_running_loop()
        executor = _command_threads()
        spawn = loop.run_in_executor(executor, _spawn, command, data is not None, workdir)
        with map_exceptions(host=self.hostname, operation=operation, path=workdir):
            try:
                process = await asyncio.shield(spawn)
            except asyncio.CancelledError:
                # cancelled while the thread starts the command: stop it as soon as it exists
                spawn.add_done_callback(lambda done: _kill_spawned(done, executor))
                raise
        try:
            talk = loop.run_in_executor(executor, _communicate, process, data, timeout)
            outcome = await asyncio.shield(talk)
        except BaseException:  # cancelled: do not leave the command running (its thread then reaps it)
            _kill_group(process)
            raise
        if outcome is None:
            raise TransportTimeoutError(
                f"command still running after {timeout} s, killed: {command[:200]}",
                host=self.hostname,
                operation=operation,
                path=workdir,
            )
        stdout, stderr = outcome
        assert process.returncode is not None
        return CommandResult(
            process.returncode,
            stdout.decode("utf-8", errors="replace"),
            stderr.decode("utf-8", errors="replace"),
        )

    async def whoami(self) -> str:
        self._require_open("whoami", None)
        return pwd.getpwuid(os.geteuid()).pw_name


def _require_local_folder(path: str) -> None:
    if not os.path.isdir(path):
        os.stat(path)
        raise NotADirectoryError(20, "Not a directory", path)


#: threads that start the local transport's commands and wait for their output: a fork/exec and
#: the reading of pipes never happen on the event loop (with a thousand jobs starting at once,
#: spawning on the loop stalled it for hundreds of milliseconds)
COMMAND_THREADS = 16
_command_executor: ThreadPoolExecutor | None = None
_command_executor_lock = threading.Lock()


def _command_threads() -> ThreadPoolExecutor:
    global _command_executor
    with _command_executor_lock:
        if _command_executor is None:
            _command_executor = ThreadPoolExecutor(COMMAND_THREADS, thread_name_prefix="plait-local-command")
        return _command_executor


def _spawn(command: str, with_stdin: bool, workdir: str | None) -> subprocess.Popen[bytes]:
    """(thread) Start ``bash -c command`` in a session of its own (so that its whole group can be killed).

    A missing ``workdir``, or one that is not a folder, raises before anything starts (checked
    here, in the same trip to the thread).
    """
    if workdir is not None:
        _require_folder(workdir)
    return subprocess.Popen(
        ["bash", "-c", command],
        stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workdir,
        start_new_session=True,
    )


def _communicate(
    process: subprocess.Popen[bytes], data: bytes | None, timeout: float | None
) -> tuple[bytes, bytes] | None:
    """(thread) The command's output, or None when it ran out of time (then it is killed and reaped)."""
    try:
        return process.communicate(data, timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        return None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the command's whole process group (it was started in a session of its own)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_spawned(spawn: asyncio.Future[subprocess.Popen[bytes]], executor: ThreadPoolExecutor) -> None:
    if spawn.cancelled() or spawn.exception() is not None:
        return
    process = spawn.result()
    _kill_group(process)
    executor.submit(process.communicate)
