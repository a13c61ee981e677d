"""One shared connection per computer: :class:`TransportPool`.

Opening an SSH connection costs a key exchange and an authentication, and
login nodes ban clients that connect too often.  The pool therefore keeps
one open transport per *key* (by convention ``(plugin_name, hostname,
username)``) and lends it to every task that asks::

    pool = TransportPool(idle_timeout=60.0)
    async with pool.request(key, factory, safe_interval=5.0) as transport:
        await transport.put(local, remote)
    ...
    await pool.close()

* The connection is opened on the first request (``factory()`` makes the
  transport; a blocking one is wrapped with :func:`as_async`).  Requests
  that arrive while it opens wait for that same attempt: concurrent first
  requests open one connection, and share its failure if it fails.
* It stays open while requests keep coming, and is closed ``idle_timeout``
  seconds after the last requester left.
* Two open attempts for the same key are at least ``safe_interval`` seconds
  apart (counted from the start of the previous attempt, failed or not);
  the pool waits with ``asyncio.sleep``.
* At most ``max_concurrent_operations`` operations run on one connection at
  a time; the others wait their turn (the first request for a key sets it).
* When the connection drops, operations in flight fail with
  :class:`ConnectionLostError` (retryable) — the plugin's keepalive makes
  sure they do not hang — and the next operation or request opens a new
  connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from types import TracebackType

from .adapters import as_async
from .contract import BlockingTransport, CommandResult, FileAttributes, LocalPath, Transport
from .errors import ConnectionLostError, TransportClosedError, TransportError

__all__ = ["PoolStatistics", "PooledTransport", "TransportFactory", "TransportPool"]

logger = logging.getLogger(__name__)

#: makes a new, unopened transport for a key.
TransportFactory = Callable[[], Transport | BlockingTransport]

#: how long the pool waits for a transport to close before dropping it.
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a :class:`TransportPool`, for ``plait status`` and tests."""

    #: connections opened successfully since the pool was made.
    opens: int
    #: open attempts, successful or not.
    open_attempts: int
    #: connections open now.
    open_connections: int
    #: requests being served now (``async with pool.request(...)`` blocks inside).
    requesters: int
    #: operations running now on pooled connections.
    in_flight: int


class _Connection:
    """The pool's record for one key: the shared transport and who uses it."""

    def __init__(self, key: Hashable, max_concurrent_operations: int) -> None:
        self.key = key
        self.transport: Transport | None = None
        self.broken = False
        self.requesters = 0
        self.in_flight = 0
        self.limit = asyncio.Semaphore(max_concurrent_operations)
        self.opening: asyncio.Task[None] | None = None
        self.idle_task: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.broken and self.transport.is_open


class TransportPool:
    """Shares one open transport per key among all requesters.  See the module docstring.

    Args:
        idle_timeout: seconds a connection stays open with no requester.
    """

    def __init__(self, idle_timeout: float = 60.0) -> None:
        if idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0, got {idle_timeout}")
        self.idle_timeout = idle_timeout
        self._connections: dict[Hashable, _Connection] = {}
        self._last_attempt: dict[Hashable, float] = {}
        self._opens = 0
        self._open_attempts = 0
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"TransportPool(idle_timeout={self.idle_timeout}, keys={list(self._connections)!r})"

    @contextlib.asynccontextmanager
    async def request(
        self,
        key: Hashable,
        factory: TransportFactory,
        *,
        safe_interval: float = 0.0,
        max_concurrent_operations: int = 8,
    ) -> AsyncIterator[PooledTransport]:
        """Lend the open transport for ``key``, opening it if needed.

        Yields a :class:`PooledTransport`, valid until the ``async with``
        block ends.

        Raises:
            ConnectionFailedError, AuthenticationError, HostKeyError: opening failed.
            RuntimeError: the pool is closed.
            ValueError: ``max_concurrent_operations`` < 1 or ``safe_interval`` < 0.
        """
        if self._closed:
            raise RuntimeError("the transport pool is closed")
        if max_concurrent_operations < 1:
            raise ValueError(f"max_concurrent_operations must be >= 1, got {max_concurrent_operations}")
        if safe_interval < 0:
            raise ValueError(f"safe_interval must be >= 0, got {safe_interval}")
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = _Connection(key, max_concurrent_operations)
        connection.requesters += 1
        if connection.idle_task is not None:
            connection.idle_task.cancel()
            connection.idle_task = None
        handle: PooledTransport | None = None
        try:
            await self._ensure_open(connection, factory, safe_interval)
            handle = PooledTransport(self, connection, factory, safe_interval)
            yield handle
        finally:
            if handle is not None:
                handle._released = True
            connection.requesters -= 1
            if connection.requesters == 0 and not self._closed:
                self._schedule_idle_close(connection)

    async def _ensure_open(
        self, connection: _Connection, factory: TransportFactory, safe_interval: float
    ) -> None:
        """Return when ``connection`` is usable; join an attempt in progress or start one."""
        if connection.usable:
            return
        if connection.opening is None:
            connection.opening = asyncio.get_running_loop().create_task(
                self._open(connection, factory, safe_interval), name=f"plait-pool-open-{connection.key!r}"
            )
            connection.opening.add_done_callback(_retrieve_exception)
        # shield: one requester giving up must not cancel the attempt the others wait for.
        await asyncio.shield(connection.opening)
        if connection.transport is None:
            raise TransportClosedError("the transport pool was closed while opening the connection")

    async def _open(self, connection: _Connection, factory: TransportFactory, safe_interval: float) -> None:
        try:
            old, connection.transport = connection.transport, None
            if old is not None:
                logger.info("reopening the dropped connection for %r", connection.key)
                await _discard(old)
            loop = asyncio.get_running_loop()
            last = self._last_attempt.get(connection.key)
            if last is not None:
                delay = last + safe_interval - loop.time()
                if delay > 0:
                    logger.debug("waiting %.2f s (safe_interval) before connecting %r", delay, connection.key)
                    await asyncio.sleep(delay)
            self._last_attempt[connection.key] = loop.time()
            self._open_attempts += 1
            transport = as_async(factory())
            await transport.open()
            if self._closed:
                await _discard(transport)
                return
            self._opens += 1
            connection.transport = transport
            connection.broken = False
        finally:
            connection.opening = None

    def _schedule_idle_close(self, connection: _Connection) -> None:
        connection.idle_task = asyncio.get_running_loop().create_task(
            self._close_when_idle(connection), name=f"plait-pool-idle-{connection.key!r}"
        )

    async def _close_when_idle(self, connection: _Connection) -> None:
        await asyncio.sleep(self.idle_timeout)
        if connection.requesters or self._connections.get(connection.key) is not connection:
            return
        del self._connections[connection.key]
        connection.idle_task = None
        if connection.transport is not None:
            logger.debug("closing the idle connection for %r", connection.key)
            transport, connection.transport = connection.transport, None
            await _discard(transport)

    async def close(self) -> None:
        """Close every connection.  Operations still running fail; later requests raise RuntimeError."""
        self._closed = True
        connections = list(self._connections.values())
        self._connections.clear()
        waits: list[asyncio.Task[None] | asyncio.Future[None]] = []
        for connection in connections:
            if connection.idle_task is not None:
                connection.idle_task.cancel()
                waits.append(connection.idle_task)
            if connection.opening is not None:
                waits.append(connection.opening)
        if waits:
            await asyncio.wait(waits, timeout=CLOSE_TIMEOUT)
        transports = [c.transport for c in connections if c.transport is not None]
        for connection in connections:
            connection.transport = None
        await asyncio.gather(*(_discard(t) for t in transports))

    def statistics(self) -> PoolStatistics:
        """Counts for monitoring; cheap, no I/O."""
        connections = list(self._connections.values())
        return PoolStatistics(
            opens=self._opens,
            open_attempts=self._open_attempts,
            open_connections=sum(1 for c in connections if c.transport is not None and c.transport.is_open),
            requesters=sum(c.requesters for c in connections),
            in_flight=sum(c.in_flight for c in connections),
        )


def _retrieve_exception(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # the requesters see it; do not log "never retrieved"


async def _discard(transport: Transport) -> None:
    """Close ``transport`` and ignore its complaints: it is being dropped anyway."""
    try:
        await asyncio.wait_for(transport.close(), CLOSE_TIMEOUT)
    except (TransportError, OSError, TimeoutError) as exc:
        logger.debug("error while closing %r, ignored: %s", transport, exc)


class PooledTransport(Transport):
    """The view of a pooled connection that :meth:`TransportPool.request` yields.

    Every operation waits for a slot (the connection's
    ``max_concurrent_operations``), then runs on the pool's current
    transport for the key.  If the connection turns out to have dropped,
    the operation fails with :class:`ConnectionLostError` and the next
    operation, here or in another request, opens a new one.

    :meth:`open` does nothing (the pool opened the connection); :meth:`close`
    only ends this handle — the connection stays in the pool.  After the
    ``async with pool.request(...)`` block, or after :meth:`close`, every
    operation raises :class:`TransportClosedError`.
    """

    def __init__(
        self, pool: TransportPool, connection: _Connection, factory: TransportFactory, safe_interval: float
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._factory = factory
        self._safe_interval = safe_interval
        self._released = False
        assert connection.transport is not None
        self.hostname = connection.transport.hostname

    def __repr__(self) -> str:
        return f"PooledTransport({self._connection.transport!r})"

    @property
    def transport(self) -> Transport | None:
        """The shared transport this handle uses now (None while it reopens)."""
        return self._connection.transport

    @contextlib.asynccontextmanager
    async def _operation(self, operation: str, path: str | None) -> AsyncIterator[Transport]:
        if self._released:
            raise TransportClosedError(
                "this pooled transport was released; ask the pool again",
                host=self.hostname,
                operation=operation,
                path=path,
            )
        connection = self._connection
        async with connection.limit:
            if not connection.usable and not self._pool._closed:
                await self._pool._ensure_open(connection, self._factory, self._safe_interval)
            transport = connection.transport
            if transport is None:
                raise TransportClosedError(
                    "the transport pool is closed", host=self.hostname, operation=operation, path=path
                )
            connection.in_flight += 1
            try:
                yield transport
            except TransportClosedError as exc:
                if self._pool._closed:
                    raise
                self._mark_broken(transport)
                raise ConnectionLostError(
                    f"the pooled connection closed under the operation ({exc.reason})",
                    host=self.hostname,
                    operation=operation,
                    path=path,
                ) from exc
            except TransportError:
                if not transport.is_open:
                    self._mark_broken(transport)
                raise
            finally:
                connection.in_flight -= 1

    def _mark_broken(self, transport: Transport) -> None:
        if self._connection.transport is transport:
            self._connection.broken = True

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Nothing to do: the pool opened the connection.  Fails on a released handle."""
        if self._released:
            raise TransportClosedError(
                "this pooled transport was released; ask the pool again", host=self.hostname, operation="open"
            )

    async def close(self) -> None:
        """End this handle; the shared connection stays open in the pool."""
        self._released = True

    @property
    def is_open(self) -> bool:
        return not self._released and self._connection.usable

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
        async with self._operation("mkdir", path) as transport:
            await transport.mkdir(path, parents=parents, exist_ok=exist_ok)

    async def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        async with self._operation("listdir", path) as transport:
            return await transport.listdir(path, pattern)

    async def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        async with self._operation("listdir_with_attributes", path) as transport:
            return await transport.listdir_with_attributes(path, pattern)

    # -- queries ---------------------------------------------------------------
    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        async with self._operation("stat", path) as transport:
            return await transport.stat(path, follow_symlinks=follow_symlinks)

    async def exists(self, path: str) -> bool:
        async with self._operation("exists", path) as transport:
            return await transport.exists(path)

    async def isdir(self, path: str) -> bool:
        async with self._operation("isdir", path) as transport:
            return await transport.isdir(path)

    async def isfile(self, path: str) -> bool:
        async with self._operation("isfile", path) as transport:
            return await transport.isfile(path)

    # -- transfers -------------------------------------------------------------
    async def put(self, localpath: LocalPath, remotepath: str) -> None:
        async with self._operation("put", remotepath) as transport:
            await transport.put(localpath, remotepath)

    async def get(self, remotepath: str, localpath: LocalPath) -> None:
        async with self._operation("get", remotepath) as transport:
            await transport.get(remotepath, localpath)

    async def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        async with self._operation("puttree", remotepath) as transport:
            await transport.puttree(localpath, remotepath)

    async def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        async with self._operation("gettree", remotepath) as transport:
            await transport.gettree(remotepath, localpath)

    async def read_bytes(self, path: str) -> bytes:
        async with self._operation("read_bytes", path) as transport:
            return await transport.read_bytes(path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        async with self._operation("write_bytes", path) as transport:
            await transport.write_bytes(path, data)

    # -- remote-side file operations -------------------------------------------
    async def copy(self, source: str, destination: str) -> None:
        async with self._operation("copy", source) as transport:
            await transport.copy(source, destination)

    async def remove(self, path: str) -> None:
        async with self._operation("remove", path) as transport:
            await transport.remove(path)

    async def rmtree(self, path: str) -> None:
        async with self._operation("rmtree", path) as transport:
            await transport.rmtree(path)

    async def rename(self, source: str, destination: str) -> None:
        async with self._operation("rename", source) as transport:
            await transport.rename(source, destination)

    async def chmod(self, path: str, mode: int) -> None:
        async with self._operation("chmod", path) as transport:
            await transport.chmod(path, mode)

    async def symlink(self, target: str, link_path: str) -> None:
        async with self._operation("symlink", link_path) as transport:
            await transport.symlink(target, link_path)

    # -- commands --------------------------------------------------------------
    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        async with self._operation("exec_command_wait", workdir) as transport:
            return await transport.exec_command_wait(command, stdin, workdir, timeout)

    async def whoami(self) -> str:
        async with self._operation("whoami", None) as transport:
            return await transport.whoami()
