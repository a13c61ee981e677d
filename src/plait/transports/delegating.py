"""A base class for transports that wrap another: every contract method forwarded, explicitly.

A wrapper (one that logs, counts, injects faults, rewrites paths or adds a
retry) usually changes one or two methods and must pass the rest through
untouched.  Subclass :class:`DelegatingTransport` (async contract) or
:class:`DelegatingBlockingTransport` (blocking contract), pass the wrapped
transport to ``__init__`` and override only what changes::

    from plait.transports import Transport
    from plait.transports.delegating import DelegatingTransport

    class CountingTransport(DelegatingTransport):
        def __init__(self, inner: Transport) -> None:
            super().__init__(inner)
            self.reads = 0

        async def read_bytes(self, path: str) -> bytes:
            self.reads += 1
            return await super().read_bytes(path)

Every method is written out (no ``__getattr__``), so type checkers, the
contract test and the conformance suite see a complete class, and a method
added to the contract without a forwarder here fails
``tests/transports/test_delegating.py`` instead of silently reaching the
inner transport through attribute magic.  ``hostname`` is the inner transport's;
``plugin_name`` and ``default_safe_interval`` are class attributes of the
wrapper (set them on the subclass when it is registered as a plugin itself).
Errors raised by the inner transport pass through unchanged (they already
name the host, the operation and the path).

Raises:
    TypeError: ``inner`` is not of the contract the wrapper forwards to
        (an async one for :class:`DelegatingTransport`, a blocking one for
        :class:`DelegatingBlockingTransport`).
"""

from __future__ import annotations

from .contract import BlockingTransport, CommandResult, FileAttributes, LocalPath, Transport

__all__ = ["DelegatingBlockingTransport", "DelegatingTransport"]


class DelegatingTransport(Transport):
    """An async :class:`Transport` that forwards every call to ``inner``.

    Opening and closing the wrapper opens and closes ``inner``;
    :attr:`is_open` is the inner transport's.
    """

    def __init__(self, inner: Transport) -> None:
        if not isinstance(inner, Transport):
            raise TypeError(
                f"DelegatingTransport wraps an async Transport, not {type(inner).__name__}; "
                "wrap a BlockingTransport with DelegatingBlockingTransport (or as_async first)"
            )
        self.inner = inner
        self.hostname = inner.hostname

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    async def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        await self.inner.mkdir(path, parents=parents, exist_ok=exist_ok)

    async def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        return await self.inner.listdir(path, pattern)

    async def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        return await self.inner.listdir_with_attributes(path, pattern)

    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        return await self.inner.stat(path, follow_symlinks=follow_symlinks)

    async def exists(self, path: str) -> bool:
        return await self.inner.exists(path)

    async def isdir(self, path: str) -> bool:
        return await self.inner.isdir(path)

    async def isfile(self, path: str) -> bool:
        return await self.inner.isfile(path)

    async def put(self, localpath: LocalPath, remotepath: str) -> None:
        await self.inner.put(localpath, remotepath)

    async def get(self, remotepath: str, localpath: LocalPath) -> None:
        await self.inner.get(remotepath, localpath)

    async def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        await self.inner.puttree(localpath, remotepath)

    async def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        await self.inner.gettree(remotepath, localpath)

    async def read_bytes(self, path: str) -> bytes:
        return await self.inner.read_bytes(path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        await self.inner.write_bytes(path, data)

    async def copy(self, source: str, destination: str) -> None:
        await self.inner.copy(source, destination)

    async def remove(self, path: str) -> None:
        await self.inner.remove(path)

    async def rmtree(self, path: str) -> None:
        await self.inner.rmtree(path)

    async def rename(self, source: str, destination: str) -> None:
        await self.inner.rename(source, destination)

    async def chmod(self, path: str, mode: int) -> None:
        await self.inner.chmod(path, mode)

    async def symlink(self, target: str, link_path: str) -> None:
        await self.inner.symlink(target, link_path)

    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        return await self.inner.exec_command_wait(command, stdin, workdir, timeout)

    async def whoami(self) -> str:
        return await self.inner.whoami()


class DelegatingBlockingTransport(BlockingTransport):
    """A :class:`BlockingTransport` that forwards every call to ``inner``.

    ``close`` stays safe to call from another thread as long as the inner
    transport's is (the contract asks that of every blocking plugin).
    """

    def __init__(self, inner: BlockingTransport) -> None:
        if not isinstance(inner, BlockingTransport):
            raise TypeError(
                f"DelegatingBlockingTransport wraps a BlockingTransport, not {type(inner).__name__}; "
                "wrap an async Transport with DelegatingTransport"
            )
        self.inner = inner
        self.hostname = inner.hostname

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        self.inner.mkdir(path, parents=parents, exist_ok=exist_ok)

    def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        return self.inner.listdir(path, pattern)

    def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        return self.inner.listdir_with_attributes(path, pattern)

    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        return self.inner.stat(path, follow_symlinks=follow_symlinks)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def isdir(self, path: str) -> bool:
        return self.inner.isdir(path)

    def isfile(self, path: str) -> bool:
        return self.inner.isfile(path)

    def put(self, localpath: LocalPath, remotepath: str) -> None:
        self.inner.put(localpath, remotepath)

    def get(self, remotepath: str, localpath: LocalPath) -> None:
        self.inner.get(remotepath, localpath)

    def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        self.inner.puttree(localpath, remotepath)

    def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        self.inner.gettree(remotepath, localpath)

    def read_bytes(self, path: str) -> bytes:
        return self.inner.read_bytes(path)

    def write_bytes(self, path: str, data: bytes) -> None:
        self.inner.write_bytes(path, data)

    def copy(self, source: str, destination: str) -> None:
        self.inner.copy(source, destination)

    def remove(self, path: str) -> None:
        self.inner.remove(path)

    def rmtree(self, path: str) -> None:
        self.inner.rmtree(path)

    def rename(self, source: str, destination: str) -> None:
        self.inner.rename(source, destination)

    def chmod(self, path: str, mode: int) -> None:
        self.inner.chmod(path, mode)

    def symlink(self, target: str, link_path: str) -> None:
        self.inner.symlink(target, link_path)

    def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        return self.inner.exec_command_wait(command, stdin, workdir, timeout)

    def whoami(self) -> str:
        return self.inner.whoami()
