"""Turn one colour of the transport contract into the other.

* :func:`as_async` gives the engine an async view of a blocking plugin
  (paramiko).  Every call runs in a thread that belongs to that one adapted
  transport and to nothing else, one call at a time: the event loop never
  waits, and a library that is not thread-safe (paramiko's SFTP client) is
  only ever touched from a single thread.
* :func:`as_blocking` gives scripts and parsers a blocking view of any
  transport.  The coroutines run on one event loop that this module owns,
  in a daemon thread started on first use, and the caller waits for the
  result.  The caller's own loop (Jupyter's, a web server's) is never
  touched, so this works inside ``async def`` code too — it blocks that
  loop for the duration of the call, which is what a blocking API does.

Both adapters are plain classes with one explicit method per contract
method, so a reader can follow every call; no ``__getattr__`` forwarding.
``tests/transports/test_contract.py`` checks that none is missing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from .contract import BlockingTransport, CommandResult, FileAttributes, LocalPath, Transport

__all__ = ["AsyncAdapter", "BlockingAdapter", "as_async", "as_blocking", "background_loop"]

P = ParamSpec("P")
T = TypeVar("T")


def as_async(transport: Transport | BlockingTransport) -> Transport:
    """An async view of ``transport``: an :class:`AsyncAdapter` for a blocking one.

    An async :class:`Transport` is returned unchanged, so the engine can call
    this on whatever a plugin gives it.

    Raises:
        TypeError: ``transport`` satisfies neither contract.
    """
    if isinstance(transport, Transport):
        return transport
    if isinstance(transport, BlockingTransport):
        return AsyncAdapter(transport)
    raise TypeError(f"expected a Transport or a BlockingTransport, got {type(transport).__name__}")


def as_blocking(
    transport: Transport | BlockingTransport, *, loop: asyncio.AbstractEventLoop | None = None
) -> BlockingTransport:
    """A blocking view of ``transport``: a :class:`BlockingAdapter` for an async one.

    A :class:`BlockingTransport` is returned unchanged.  An async connection
    belongs to the loop that opened it: give either an *unopened* transport
    (the adapter opens and runs it on its own background loop), or, with
    ``loop``, one already open on that loop — a connection of the engine's
    pool, say, so that a parser running in a thread reuses the job's SSH
    connection instead of opening a second one to the same login node.

    Raises:
        TypeError: ``transport`` satisfies neither contract.
    """
    if isinstance(transport, BlockingTransport):
        return transport
    if isinstance(transport, Transport):
        return BlockingAdapter(transport, loop=loop)
    raise TypeError(f"expected a Transport or a BlockingTransport, got {type(transport).__name__}")


class AsyncAdapter(Transport):
    """Runs a :class:`BlockingTransport` in its own single thread, behind ``await``.

    Calls are queued to that thread in the order they are made, and run one
    at a time.  Cancelling an ``await`` does not stop a call that already
    runs in the thread (a thread cannot be interrupted); it finishes, and its
    result is dropped.

    :meth:`close` is the exception to "one at a time": when a call is still
    running (a hung network read, say), the wrapped ``close()`` runs in a
    separate thread so that it can break that call, the way closing a socket
    wakes a reader.  Blocking plugins must make ``close()`` safe for that
    (paramiko's is).
    """

    def __init__(self, wrapped: BlockingTransport) -> None:
        #: the blocking transport doing the work.
        self.wrapped = wrapped
        self.hostname = getattr(wrapped, "hostname", "?")
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0
        self._pending_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"as_async({self.wrapped!r})"

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            name = type(self.wrapped).plugin_name or type(self.wrapped).__name__
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"plait-{name}-{self.hostname}"
            )
        return self._executor

    def _finished(self, _future: object) -> None:
        with self._pending_lock:
            self._pending -= 1

    async def _call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func(*args, **kwargs)`` in this transport's thread and await its result."""
        with self._pending_lock:
            self._pending += 1
        try:
            future = self._thread().submit(func, *args, **kwargs)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)
        return await asyncio.wrap_future(future)

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        await self._call(self.wrapped.open)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            await asyncio.to_thread(self.wrapped.close)
            return
        with self._pending_lock:
            busy = self._pending > 0
        try:
            if busy:
                await asyncio.to_thread(self.wrapped.close)
            else:
                await asyncio.wrap_future(executor.submit(self.wrapped.close))
        finally:
            executor.shutdown(wait=False)

    @property
    def is_open(self) -> bool:
        return self.wrapped.is_open

    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- folders ---------------------------------------------------------------
    async def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        await self._call(self.wrapped.mkdir, path, parents=parents, exist_ok=exist_ok)

    async def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        return await self._call(self.wrapped.listdir, path, pattern)

    async def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        return await self._call(self.wrapped.listdir_with_attributes, path, pattern)

    # -- queries ---------------------------------------------------------------
    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        return await self._call(self.wrapped.stat, path, follow_symlinks=follow_symlinks)

    async def exists(self, path: str) -> bool:
        return await self._call(self.wrapped.exists, path)

    async def isdir(self, path: str) -> bool:
        return await self._call(self.wrapped.isdir, path)

    async def isfile(self, path: str) -> bool:
        return await self._call(self.wrapped.isfile, path)

    # -- transfers -------------------------------------------------------------
    async def put(self, localpath: LocalPath, remotepath: str) -> None:
        await self._call(self.wrapped.put, localpath, remotepath)

    async def get(self, remotepath: str, localpath: LocalPath) -> None:
        await self._call(self.wrapped.get, remotepath, localpath)

    async def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        await self._call(self.wrapped.puttree, localpath, remotepath)

    async def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        await self._call(self.wrapped.gettree, remotepath, localpath)

    async def read_bytes(self, path: str) -> bytes:
        return await self._call(self.wrapped.read_bytes, path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        await self._call(self.wrapped.write_bytes, path, data)

    # -- remote-side file operations -------------------------------------------
    async def copy(self, source: str, destination: str) -> None:
        await self._call(self.wrapped.copy, source, destination)

    async def remove(self, path: str) -> None:
        await self._call(self.wrapped.remove, path)

    async def rmtree(self, path: str) -> None:
        await self._call(self.wrapped.rmtree, path)

    async def rename(self, source: str, destination: str) -> None:
        await self._call(self.wrapped.rename, source, destination)

    async def chmod(self, path: str, mode: int) -> None:
        await self._call(self.wrapped.chmod, path, mode)

    async def symlink(self, target: str, link_path: str) -> None:
        await self._call(self.wrapped.symlink, target, link_path)

    # -- commands --------------------------------------------------------------
    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        return await self._call(self.wrapped.exec_command_wait, command, stdin, workdir, timeout)

    async def whoami(self) -> str:
        return await self._call(self.wrapped.whoami)


# -- the background loop of as_blocking ------------------------------------------

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The event loop that :class:`BlockingAdapter` runs coroutines on, started on first use.

    It runs forever in a daemon thread named ``plait-transports-loop``.  Code
    that needs to run a coroutine from blocking code without a loop of its
    own may use it through :func:`asyncio.run_coroutine_threadsafe`.
    """
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None or _loop_thread is None or not _loop_thread.is_alive():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="plait-transports-loop", daemon=True)
            thread.start()
            started.wait()
            _loop, _loop_thread = loop, thread
        return _loop


def _runs_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True if the calling thread is the one running ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return loop is _loop and threading.current_thread() is _loop_thread


class BlockingAdapter(BlockingTransport):
    """Runs an async :class:`Transport` on the module's background loop, behind plain calls.

    Each method submits the coroutine with :func:`asyncio.run_coroutine_threadsafe`
    and waits for it; exceptions are re-raised in the caller's thread.  A
    ``KeyboardInterrupt`` while waiting cancels the coroutine.

    Raises:
        RuntimeError: (from every method) when called from the background
            loop's own thread — that call would wait for itself forever.
    """

    def __init__(self, wrapped: Transport, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        #: the async transport doing the work.
        self.wrapped = wrapped
        self.hostname = getattr(wrapped, "hostname", "?")
        #: the loop the coroutines run on (None: the module's background loop)
        self.loop = loop

    def __repr__(self) -> str:
        return f"as_blocking({self.wrapped!r})"

    def _run(self, func: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = self.loop or background_loop()
        if _runs_loop(loop):
            raise RuntimeError(
                f"{func.__name__}() of a blocking transport view was called from the transport "
                "loop's own thread; it would wait for itself forever. In async code, await the "
                "async transport (adapter.wrapped) instead."
            )
        future = asyncio.run_coroutine_threadsafe(func(*args, **kwargs), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    # -- lifecycle -------------------------------------------------------------
    def open(self) -> None:
        self._run(self.wrapped.open)

    def close(self) -> None:
        self._run(self.wrapped.close)

    @property
    def is_open(self) -> bool:
        return self.wrapped.is_open

    def __enter__(self) -> BlockingTransport:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- folders ---------------------------------------------------------------
    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        self._run(self.wrapped.mkdir, path, parents=parents, exist_ok=exist_ok)

    def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        return self._run(self.wrapped.listdir, path, pattern)

    def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        return self._run(self.wrapped.listdir_with_attributes, path, pattern)

    # -- queries ---------------------------------------------------------------
    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        return self._run(self.wrapped.stat, path, follow_symlinks=follow_symlinks)

    def exists(self, path: str) -> bool:
        return self._run(self.wrapped.exists, path)

    def isdir(self, path: str) -> bool:
        return self._run(self.wrapped.isdir, path)

    def isfile(self, path: str) -> bool:
        return self._run(self.wrapped.isfile, path)

    # -- transfers -------------------------------------------------------------
    def put(self, localpath: LocalPath, remotepath: str) -> None:
        self._run(self.wrapped.put, localpath, remotepath)

    def get(self, remotepath: str, localpath: LocalPath) -> None:
        self._run(self.wrapped.get, remotepath, localpath)

    def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        self._run(self.wrapped.puttree, localpath, remotepath)

    def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        self._run(self.wrapped.gettree, remotepath, localpath)

    def read_bytes(self, path: str) -> bytes:
        return self._run(self.wrapped.read_bytes, path)

    def write_bytes(self, path: str, data: bytes) -> None:
        self._run(self.wrapped.write_bytes, path, data)

    # -- remote-side file operations -------------------------------------------
    def copy(self, source: str, destination: str) -> None:
        self._run(self.wrapped.copy, source, destination)

    def remove(self, path: str) -> None:
        self._run(self.wrapped.remove, path)

    def rmtree(self, path: str) -> None:
        self._run(self.wrapped.rmtree, path)

    def rename(self, source: str, destination: str) -> None:
        self._run(self.wrapped.rename, source, destination)

    def chmod(self, path: str, mode: int) -> None:
        self._run(self.wrapped.chmod, path, mode)

    def symlink(self, target: str, link_path: str) -> None:
        self._run(self.wrapped.symlink, target, link_path)

    # -- commands --------------------------------------------------------------
    def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        return self._run(self.wrapped.exec_command_wait, command, stdin, workdir, timeout)

    def whoami(self) -> str:
        return self._run(self.wrapped.whoami)
