"""The transport contract: how plait reaches a computer.

There is one contract, written twice with the same method names, arguments
and return types:

* :class:`Transport` — ``async def`` methods and ``async with``.  The engine
  only ever talks to this one.  Plugins built on an async library (asyncssh,
  the local file system through a thread) implement it directly.
* :class:`BlockingTransport` — plain ``def`` methods and ``with``.  Plugins
  built on a blocking library (paramiko) implement it; the engine wraps them
  with :func:`plait.transports.as_async`, which runs every call in the
  transport's own single thread so the event loop never blocks.

A test (``tests/transports/test_contract.py``) asserts that the two classes
keep identical method names, parameters and annotations; change both or
neither.  Scripts and parsers that want a blocking view of any transport use
:func:`plait.transports.as_blocking`.

Conventions for every method:

* Remote paths are POSIX strings.  Relative remote paths are relative to the
  login directory of the remote user (for ``local``: the current working
  directory of the process).  Local paths accept ``str`` or ``os.PathLike``.
* Failures raise a subclass of :class:`plait.transports.errors.TransportError`
  naming the host, the operation (the method's name) and the path; never a
  library's own error.  The ``Raises:`` sections below list each error the
  conformance suite (:mod:`plait.transports.testing`) asserts.
* Every method except :meth:`Transport.close` and :attr:`Transport.is_open`
  raises :class:`~plait.transports.errors.TransportClosedError` (not
  retryable) on a transport that is not open, including after ``close()``.
* Writes never leave a half-written file under its final name: data goes to
  a temporary name in the same folder and is renamed into place.  The suite
  checks this with a reader thread that looks at the file directly, not
  through the transport.
* ``async def`` methods never block the event loop (the suite measures the
  loop's longest stall around each call): run blocking work in a thread, or
  write a :class:`BlockingTransport` and let ``as_async`` do it.

The constructor contract: the engine builds a transport as
``cls(hostname=computer.hostname, **computer_configure_options)``
(``Computer.get_transport``), and wraps a blocking one with
:func:`plait.transports.as_async`.  So a plugin's ``__init__`` must take
``hostname`` as a keyword argument and every option its ``plait computer
configure`` accepts as a keyword argument, store ``hostname`` unchanged as
``self.hostname``, and not connect (``open`` does; the pool decides when).
:func:`plait.transports.testing.build_transport` builds a plugin this way.
"""

from __future__ import annotations

import os
import stat as _stat
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, NamedTuple

__all__ = ["BlockingTransport", "CommandResult", "FileAttributes", "LocalPath", "Transport"]

LocalPath = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class FileAttributes:
    """What :meth:`Transport.stat` knows about a path.

    ``mode`` is the full ``st_mode`` (type bits and permission bits), so the
    usual :mod:`stat` helpers apply; the properties below are shortcuts.
    """

    size: int
    mode: int
    mtime: float
    uid: int | None = None
    gid: int | None = None

    @property
    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return _stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return _stat.S_ISLNK(self.mode)

    @property
    def permissions(self) -> int:
        """The permission bits only, e.g. ``0o755``."""
        return _stat.S_IMODE(self.mode)


class CommandResult(NamedTuple):
    """The outcome of :meth:`Transport.exec_command_wait`.

    ``stdout`` and ``stderr`` are decoded as UTF-8 with undecodable bytes
    replaced, which is what scheduler plugins and parsers want.
    """

    returncode: int
    stdout: str
    stderr: str


class Transport(ABC):
    """The async transport contract.  See the module docstring for conventions.

    A transport is built as ``cls(hostname=..., **options)`` without
    connecting (the constructor contract in the module docstring), opened
    with ``await transport.open()`` or ``async with transport:``, used, then
    closed.  One open transport may serve many
    concurrent operations (the pool bounds how many); a plugin whose library
    is not safe for that must serialise internally.
    """

    #: name under the ``plait.transports`` entry point group.
    plugin_name: ClassVar[str] = ""
    #: seconds to wait between opening two connections to the same host
    #: (login nodes ban clients that connect too often).  The computer's
    #: configuration may override it.
    default_safe_interval: ClassVar[float] = 0.0

    #: the host this transport reaches, used in error messages and pool keys.
    hostname: str

    # -- lifecycle -----------------------------------------------------------
    @abstractmethod
    async def open(self) -> None:
        """Open the connection.

        Raises:
            ConnectionFailedError: the host cannot be reached.
            AuthenticationError: every credential was refused.
            HostKeyError: the host key is unknown or changed.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close the connection.  Closing twice, or an unopened transport, is a no-op.

        Afterwards every other method raises ``TransportClosedError``.
        """

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close` (or a dropped connection)."""

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

    # -- folders -------------------------------------------------------------
    @abstractmethod
    async def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        """Create the folder ``path``.

        Args:
            parents: also create missing parent folders (like ``mkdir -p``).
            exist_ok: do not fail when ``path`` already is a folder.

        Raises:
            PathExistsError: ``path`` exists (as a folder and not ``exist_ok``, or as a file).
            PathNotFoundError: the parent is missing and not ``parents``.
            PermissionDeniedError: the parent is not writable.
        """

    @abstractmethod
    async def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        """Names (not paths) of the entries of folder ``path``, sorted, without ``.`` and ``..``.

        Args:
            pattern: an ``fnmatch`` glob applied to the names (``"*.out"``).

        Raises:
            PathNotFoundError: ``path`` does not exist.
            NotADirectoryTransportError: ``path`` is not a folder.
        """

    @abstractmethod
    async def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        """Like :meth:`listdir`, with the (not dereferenced) attributes of each entry.

        Raises:
            PathNotFoundError: ``path`` does not exist.
            NotADirectoryTransportError: ``path`` is not a folder.
        """

    # -- queries -------------------------------------------------------------
    @abstractmethod
    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        """Attributes of ``path``; with ``follow_symlinks=False`` those of a link itself.

        Raises:
            PathNotFoundError: ``path`` does not exist (or is a dangling link followed).
        """

    @abstractmethod
    async def exists(self, path: str) -> bool:
        """True if ``path`` exists (a dangling symlink counts as existing)."""

    @abstractmethod
    async def isdir(self, path: str) -> bool:
        """True if ``path`` is a folder (following symlinks); False if missing."""

    @abstractmethod
    async def isfile(self, path: str) -> bool:
        """True if ``path`` is a regular file (following symlinks); False if missing."""

    # -- transfers -----------------------------------------------------------
    @abstractmethod
    async def put(self, localpath: LocalPath, remotepath: str) -> None:
        """Upload the local file ``localpath`` to ``remotepath``, overwriting a file there.

        The data is written under a temporary name next to ``remotepath`` and
        renamed into place, so a reader never sees a half-written file.  The
        permission bits of the local file are kept (an uploaded script stays
        executable).

        Raises:
            FileNotFoundError: the local file does not exist (a local problem, not a transport one).
            PathNotFoundError: the remote parent folder does not exist.
            IsADirectoryTransportError: ``remotepath`` is a folder.
            PermissionDeniedError: the remote folder is not writable.
        """

    @abstractmethod
    async def get(self, remotepath: str, localpath: LocalPath) -> None:
        """Download the remote file ``remotepath`` to ``localpath`` (temporary name, then rename).

        The permission bits of the remote file are kept.

        Raises:
            PathNotFoundError: the remote file does not exist.
            IsADirectoryTransportError: ``remotepath`` is a folder.
        """

    @abstractmethod
    async def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        """Upload the local folder ``localpath`` as ``remotepath`` (created if missing).

        Nested folders are copied; symlinks are recreated as symlinks with the
        same target.  Existing remote files of the same names are overwritten.

        Raises:
            FileNotFoundError: the local folder does not exist (a local problem).
        """

    @abstractmethod
    async def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        """Download the remote folder ``remotepath`` as ``localpath`` (created if missing).

        Nested folders are copied; symlinks are recreated as symlinks.

        Raises:
            PathNotFoundError: ``remotepath`` does not exist.
            NotADirectoryTransportError: ``remotepath`` is not a folder.
        """

    @abstractmethod
    async def read_bytes(self, path: str) -> bytes:
        """The whole content of the remote file ``path``.

        Raises:
            PathNotFoundError, IsADirectoryTransportError, PermissionDeniedError.
        """

    @abstractmethod
    async def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to the remote file ``path`` (temporary name, then rename).

        Raises:
            PathNotFoundError: the parent folder does not exist.
            IsADirectoryTransportError: ``path`` is a folder.
            PermissionDeniedError: the parent folder is not writable.
        """

    # -- remote-side file operations -----------------------------------------
    @abstractmethod
    async def copy(self, source: str, destination: str) -> None:
        """Copy a file or a whole folder on the remote side (symlinks kept as symlinks).

        Copying a folder onto an existing folder merges into it.

        Raises:
            PathNotFoundError: ``source`` does not exist.
        """

    @abstractmethod
    async def remove(self, path: str) -> None:
        """Remove the file or symlink ``path``.

        Raises:
            PathNotFoundError: ``path`` does not exist.
            IsADirectoryTransportError: ``path`` is a folder (use :meth:`rmtree`).
        """

    @abstractmethod
    async def rmtree(self, path: str) -> None:
        """Remove the folder ``path`` and everything below it (symlinks are not followed).

        Raises:
            PathNotFoundError: ``path`` does not exist.
            NotADirectoryTransportError: ``path`` is not a folder (a symlink to one included).
        """

    @abstractmethod
    async def rename(self, source: str, destination: str) -> None:
        """Rename ``source`` to ``destination``, replacing a file there.

        Raises:
            PathNotFoundError: ``source`` does not exist.
        """

    @abstractmethod
    async def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits of ``path`` (e.g. ``0o750``).

        Raises:
            PathNotFoundError: ``path`` does not exist.
        """

    @abstractmethod
    async def symlink(self, target: str, link_path: str) -> None:
        """Create the symlink ``link_path`` pointing at ``target`` (which need not exist).

        Raises:
            PathExistsError: ``link_path`` already exists.
        """

    # -- commands ------------------------------------------------------------
    @abstractmethod
    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``command`` through ``bash -c`` on the remote side and wait for it.

        The command line is passed as it is: quoting its arguments is the
        caller's job (use :func:`shlex.quote`).  A non-zero exit code is *not*
        an error; it is returned in :attr:`CommandResult.returncode`.

        Args:
            stdin: data fed to the command's standard input, then closed.
            workdir: folder to run in (quoted by the transport).
            timeout: seconds after which the command is killed: its whole process
                group (or session), not only the shell, so no child survives; the
                call returns promptly after the time-out.

        Raises:
            PathNotFoundError: ``workdir`` does not exist (nothing is run).
            TransportTimeoutError: the command ran longer than ``timeout`` (retryable).
        """

    @abstractmethod
    async def whoami(self) -> str:
        """The user name that commands run as on the remote side."""


class BlockingTransport(ABC):
    """The blocking twin of :class:`Transport`: same names, same arguments, plain ``def``.

    Every method has exactly the contract documented on :class:`Transport`.
    The engine never calls a blocking transport directly: it wraps it with
    :func:`plait.transports.as_async`.
    """

    plugin_name: ClassVar[str] = ""
    default_safe_interval: ClassVar[float] = 0.0
    hostname: str

    @abstractmethod
    def open(self) -> None:
        """See :meth:`Transport.open`."""

    @abstractmethod
    def close(self) -> None:
        """See :meth:`Transport.close`.

        Unlike the other methods, ``close`` must be safe to call from another
        thread while a call is running: :func:`plait.transports.as_async`
        uses it to break a call that hangs on a dead connection.
        """

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """See :attr:`Transport.is_open`."""

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

    @abstractmethod
    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        """See :meth:`Transport.mkdir`."""

    @abstractmethod
    def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        """See :meth:`Transport.listdir`."""

    @abstractmethod
    def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        """See :meth:`Transport.listdir_with_attributes`."""

    @abstractmethod
    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        """See :meth:`Transport.stat`."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """See :meth:`Transport.exists`."""

    @abstractmethod
    def isdir(self, path: str) -> bool:
        """See :meth:`Transport.isdir`."""

    @abstractmethod
    def isfile(self, path: str) -> bool:
        """See :meth:`Transport.isfile`."""

    @abstractmethod
    def put(self, localpath: LocalPath, remotepath: str) -> None:
        """See :meth:`Transport.put`."""

    @abstractmethod
    def get(self, remotepath: str, localpath: LocalPath) -> None:
        """See :meth:`Transport.get`."""

    @abstractmethod
    def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        """See :meth:`Transport.puttree`."""

    @abstractmethod
    def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        """See :meth:`Transport.gettree`."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """See :meth:`Transport.read_bytes`."""

    @abstractmethod
    def write_bytes(self, path: str, data: bytes) -> None:
        """See :meth:`Transport.write_bytes`."""

    @abstractmethod
    def copy(self, source: str, destination: str) -> None:
        """See :meth:`Transport.copy`."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """See :meth:`Transport.remove`."""

    @abstractmethod
    def rmtree(self, path: str) -> None:
        """See :meth:`Transport.rmtree`."""

    @abstractmethod
    def rename(self, source: str, destination: str) -> None:
        """See :meth:`Transport.rename`."""

    @abstractmethod
    def chmod(self, path: str, mode: int) -> None:
        """See :meth:`Transport.chmod`."""

    @abstractmethod
    def symlink(self, target: str, link_path: str) -> None:
        """See :meth:`Transport.symlink`."""

    @abstractmethod
    def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """See :meth:`Transport.exec_command_wait`."""

    @abstractmethod
    def whoami(self) -> str:
        """See :meth:`Transport.whoami`."""
