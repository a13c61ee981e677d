"""The ``ssh`` transport: OpenSSH servers through asyncssh, natively async.

One SSH connection carries one SFTP session, shared by every concurrent
file operation (SFTP requests are multiplexed), and one channel per running
command.  OpenSSH allows 10 channels per connection by default
(``MaxSessions``), so commands beyond ``max_sessions`` wait for a free one.

Host keys are checked against ``known_hosts_file`` (``~/.ssh/known_hosts``
by default).  An unknown key is refused unless ``allow_unknown_host_key``;
a key that differs from the recorded one is always refused.  Both raise
:class:`HostKeyError` with the fingerprint and what to do.

A dropped connection makes running operations fail with
:class:`ConnectionLostError`; a server that stops answering is detected by
the keepalive (``keepalive_interval`` times ``keepalive_count_max`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import importlib
import logging
import os
import posixpath
import stat
import sys
import time
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import _remote_shell as shell
from ._local_files import (
    AtomicLocalFile,
    LocalSource,
    local_join,
    replace_with_symlink,
    temporary_sibling,
    walk_local_tree,
    write_file_atomically,
)
from ._ssh_options import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_KNOWN_HOSTS_FILE,
    SshOptions,
    changed_host_key_error,
    unknown_host_key_error,
)
from .contract import CommandResult, FileAttributes, LocalPath, Transport
from .error_mapping import translate
from .errors import (
    ConnectionLostError,
    HostKeyError,
    IsADirectoryTransportError,
    NotADirectoryTransportError,
    PathExistsError,
    PathNotFoundError,
    PermissionDeniedError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)

if TYPE_CHECKING:
    import asyncssh

__all__ = ["SshTransport"]

logger = logging.getLogger(__name__)

#: bytes per local read/write and per SFTP read/write call.  asyncssh encrypts a
#: call's data in few callbacks, so this bounds how long the event loop is busy
#: (4 MiB chunks stalled it ~30 ms; 1 MiB keeps it under 10 ms).
CHUNK_SIZE = 1024 * 1024
#: ciphers tried first: AES-GCM runs on the CPU's AES instructions, about twice
#: as fast here as chacha20-poly1305 (the rest of asyncssh's defaults follow).
PREFERRED_CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
#: files transferred at once inside puttree/gettree.
TREE_CONCURRENCY = 16
#: seconds to keep retrying when the server refuses one more session channel.
SESSION_WAIT = 30.0


def _attributes(attrs: asyncssh.SFTPAttrs) -> FileAttributes:
    mtime = float(attrs.mtime or 0)
    if attrs.mtime_ns:
        mtime = attrs.mtime_ns / 1e9
    return FileAttributes(
        size=attrs.size or 0, mode=attrs.permissions or 0, mtime=mtime, uid=attrs.uid, gid=attrs.gid
    )


def _configures_ciphers(config_file: str) -> bool:
    with open(config_file, encoding="utf-8", errors="replace") as config:
        return any(line.strip().lower().startswith("ciphers") for line in config)


class _HostKeyVerdict:
    """Decides on keys that known_hosts does not vouch for, and remembers why."""

    def __init__(self, options: SshOptions) -> None:
        self.options = options
        self.error: HostKeyError | None = None

    def decide(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        import asyncssh

        known_hosts = self.options.known_hosts_file
        recorded: Sequence[asyncssh.SSHKey] = []
        if known_hosts and os.path.isfile(known_hosts):
            recorded = asyncssh.match_known_hosts(known_hosts, host, addr, None if port == 22 else port)[0]
        description = f"{key.get_algorithm()} key {key.get_fingerprint()}"
        if recorded:
            self.error = changed_host_key_error(host, port, description, known_hosts, self.options.hostname)
            return False
        if self.options.allow_unknown_host_key:
            logger.warning("accepting the unknown host key of %s:%s (%s)", host, port, description)
            return True
        self.error = unknown_host_key_error(host, port, description, known_hosts, self.options.hostname)
        return False


def _client_factory(verdict: _HostKeyVerdict) -> type:
    import asyncssh

    class Client(asyncssh.SSHClient):
        def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
            return verdict.decide(host, addr, port, key)

    return Client


class SshTransport(Transport):
    """Reach a computer over SSH with asyncssh.  See :class:`plait.transports.Transport`.

    Args:
        hostname: host name, address or ``~/.ssh/config`` alias.
        port: None means the config file's ``Port``, else 22.
        username: None means the config file's ``User``, else the local user name.
        key_filenames: private key file(s) to offer; None means ssh's defaults
            (``~/.ssh/id_*`` and the config's ``IdentityFile``).
        use_agent: offer the keys of the SSH agent; None means "if ``SSH_AUTH_SOCK`` is set".
        config_file: OpenSSH client configuration to read; None reads none.
        known_hosts_file: where trusted host keys are; None trusts no key.
        allow_unknown_host_key: accept a host with no known_hosts entry.  A
            key that *differs* from its entry is refused regardless.
        proxy_jump: ``[user@]host[:port]`` hops to go through, comma-separated
            (like ``ssh -J``); each hop is checked with the same keys and options.
        keepalive_interval: seconds between keepalive requests; None disables them.
        keepalive_count_max: unanswered keepalives after which the connection is dropped.
        connect_timeout: seconds allowed to connect and authenticate.
        max_sessions: commands running at once on the connection.

    Raises:
        ValueError: an option is invalid (named in the message).
    """

    plugin_name = "ssh"
    default_safe_interval = 5.0

    def __init__(
        self,
        hostname: str,
        *,
        port: int | None = None,
        username: str | None = None,
        key_filenames: LocalPath | Sequence[LocalPath] | None = None,
        use_agent: bool | None = None,
        config_file: LocalPath | None = DEFAULT_CONFIG_FILE,
        known_hosts_file: LocalPath | None = DEFAULT_KNOWN_HOSTS_FILE,
        allow_unknown_host_key: bool = False,
        proxy_jump: str | None = None,
        keepalive_interval: float | None = 30.0,
        keepalive_count_max: int = 3,
        connect_timeout: float | None = 30.0,
        max_sessions: int = 8,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.options = SshOptions.build(
            hostname,
            port=port,
            username=username,
            key_filenames=key_filenames,
            use_agent=use_agent,
            config_file=config_file,
            known_hosts_file=known_hosts_file,
            allow_unknown_host_key=allow_unknown_host_key,
            proxy_jump=proxy_jump,
            keepalive_interval=keepalive_interval,
            keepalive_count_max=keepalive_count_max,
            connect_timeout=connect_timeout,
        )
        self.hostname = hostname
        self.max_sessions = max_sessions
        self._conn: asyncssh.SSHClientConnection | None = None
        self._jumps: list[asyncssh.SSHClientConnection] = []
        self._sftp: asyncssh.SFTPClient | None = None
        self._sessions: asyncio.Semaphore | None = None
        self._user: str | None = None

    def __repr__(self) -> str:
        return f"SshTransport({self.hostname!r})"

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Connect, authenticate and start the SFTP session.  A no-op when already open.

        Raises:
            ConnectionFailedError: the host (or a jump host) cannot be reached.
            AuthenticationError: every key was refused.
            HostKeyError: the host key is unknown (and not allowed) or changed.
        """
        if self.is_open:
            return
        await self._drop()
        if "asyncssh" not in sys.modules:  # importing asyncssh takes ~0.1 s: not on the event loop
            await asyncio.to_thread(importlib.import_module, "asyncssh")
        verdict = _HostKeyVerdict(self.options)
        try:
            tunnel = None
            for hop in self.options.proxy_jump:
                tunnel = await self._connect(hop.hostname, hop.port, hop.username, tunnel, verdict)
                self._jumps.append(tunnel)
            opts = self.options
            self._conn = await self._connect(opts.hostname, opts.port, opts.username, tunnel, verdict)
            self._sftp = await self._conn.start_sftp_client()
        except Exception as exc:
            await self._drop()
            if verdict.error is not None:
                raise verdict.error from exc
            error = translate(exc, host=self.hostname, operation="open")
            if error is None:
                raise
            raise error from exc
        except BaseException:
            await self._drop()
            raise
        self._sessions = asyncio.Semaphore(self.max_sessions)
        self._user = None

    async def _connect(
        self,
        host: str,
        port: int | None,
        username: str | None,
        tunnel: asyncssh.SSHClientConnection | None,
        verdict: _HostKeyVerdict,
    ) -> asyncssh.SSHClientConnection:
        import asyncssh

        opts = self.options
        # three empty key lists mean "trust no key"; an empty value would mean the default file.
        known_hosts: object = ([], [], [])
        if opts.known_hosts_file is not None:
            if await asyncio.to_thread(os.path.isfile, opts.known_hosts_file):
                known_hosts = opts.known_hosts_file
        ciphers: object = ()
        if not opts.config_file or not await asyncio.to_thread(_configures_ciphers, opts.config_file):
            ciphers = PREFERRED_CIPHERS  # an explicit ``Ciphers`` line in the user's config wins
        return await asyncssh.connect(
            host,
            port if port is not None else (),
            tunnel=tunnel if tunnel is not None else (),
            config=[opts.config_file] if opts.config_file else [],
            username=username if username is not None else (),
            client_keys=list(opts.key_filenames) if opts.key_filenames is not None else (),
            agent_path=() if opts.use_agent else None,
            known_hosts=known_hosts,
            client_factory=_client_factory(verdict),
            keepalive_interval=opts.keepalive_interval or 0,
            keepalive_count_max=opts.keepalive_count_max,
            connect_timeout=opts.connect_timeout,
            encryption_algs=ciphers,
        )

    async def _drop(self) -> None:
        """Forget the connection (and jump hosts), closing whatever is left of them."""
        sftp, self._sftp = self._sftp, None
        connections = [c for c in (self._conn, *reversed(self._jumps)) if c is not None]
        self._conn, self._jumps = None, []
        if sftp is not None:
            sftp.exit()
        for conn in connections:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5.0)

    async def close(self) -> None:
        """Close the connection; a no-op when not open."""
        await self._drop()

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    # -- plumbing --------------------------------------------------------------
    def _require_sftp(self, operation: str, path: str | None) -> asyncssh.SFTPClient:
        self._require_open(operation, path)
        assert self._sftp is not None
        return self._sftp

    def _require_open(self, operation: str, path: str | None) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise TransportClosedError(
                "the transport is not open", host=self.hostname, operation=operation, path=path
            )
        if self._conn.is_closed():
            raise ConnectionLostError(
                "the connection was lost", host=self.hostname, operation=operation, path=path
            )
        return self._conn

    @contextlib.contextmanager
    def _mapped(self, operation: str, path: str | None) -> Iterator[None]:
        """Translate asyncssh/OS failures in the body into the contract's errors."""
        try:
            yield
        except Exception as exc:
            if isinstance(exc, TransportError):
                raise
            error = translate(exc, host=self.hostname, operation=operation, path=path)
            if error is None:
                raise
            if (
                self._conn is not None
                and self._conn.is_closed()
                and not isinstance(error, TransportTimeoutError)
            ):
                error = ConnectionLostError(
                    f"the connection was lost ({error.reason})",
                    host=self.hostname,
                    operation=operation,
                    path=path,
                )
            raise error from exc

    def _error(
        self, error_class: type[TransportError], reason: str, operation: str, path: str | None
    ) -> TransportError:
        return error_class(reason, host=self.hostname, operation=operation, path=path)

    async def _lstat_or_none(self, sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
        import asyncssh

        try:
            return await sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            return None

    async def _stat_or_none(self, sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
        import asyncssh

        try:
            return await sftp.stat(path)
        except asyncssh.SFTPNoSuchFile:
            return None

    # -- folders ---------------------------------------------------------------
    async def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        sftp = self._require_sftp("mkdir", path)
        with self._mapped("mkdir", path):
            await self._mkdir(sftp, path, parents, exist_ok)

    async def _mkdir(self, sftp: asyncssh.SFTPClient, path: str, parents: bool, exist_ok: bool) -> None:
        import asyncssh

        try:
            await sftp.mkdir(path)
            return
        except asyncssh.SFTPNoSuchFile:
            parent = posixpath.dirname(path.rstrip("/"))
            if not parents or parent in ("", "/", path):
                raise
            await self._mkdir(sftp, parent, True, True)
            await self._mkdir(sftp, path, False, exist_ok)
        except asyncssh.SFTPError as exc:  # OpenSSH reports EEXIST as a generic failure
            attrs = await self._lstat_or_none(sftp, path)
            if attrs is None:
                raise
            if exist_ok and stat.S_ISDIR((await sftp.stat(path)).permissions or 0):
                return
            raise self._error(PathExistsError, "File exists", "mkdir", path) from exc

    async def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        return list(await self._listdir("listdir", path, pattern))

    async def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        return await self._listdir("listdir_with_attributes", path, pattern)

    async def _listdir(self, operation: str, path: str, pattern: str | None) -> dict[str, FileAttributes]:
        import asyncssh

        sftp = self._require_sftp(operation, path)
        with self._mapped(operation, path):
            try:
                entries = await sftp.readdir(path)
            except asyncssh.SFTPNoSuchFile as exc:  # OpenSSH folds ENOTDIR into "no such file"
                if await self._lstat_or_none(sftp, path) is not None:
                    raise self._error(
                        NotADirectoryTransportError, "Not a directory", operation, path
                    ) from exc
                raise
        found = {
            str(entry.filename): _attributes(entry.attrs)
            for entry in entries
            if entry.filename not in (".", "..")
        }
        names = sorted(found)
        if pattern is not None:
            names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        return {name: found[name] for name in names}

    # -- queries ---------------------------------------------------------------
    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        sftp = self._require_sftp("stat", path)
        with self._mapped("stat", path):
            attrs = await (sftp.stat(path) if follow_symlinks else sftp.lstat(path))
        return _attributes(attrs)

    async def exists(self, path: str) -> bool:
        sftp = self._require_sftp("exists", path)
        with self._mapped("exists", path):
            return await self._lstat_or_none(sftp, path) is not None

    async def isdir(self, path: str) -> bool:
        sftp = self._require_sftp("isdir", path)
        with self._mapped("isdir", path):
            attrs = await self._stat_or_none(sftp, path)
        return attrs is not None and stat.S_ISDIR(attrs.permissions or 0)

    async def isfile(self, path: str) -> bool:
        sftp = self._require_sftp("isfile", path)
        with self._mapped("isfile", path):
            attrs = await self._stat_or_none(sftp, path)
        return attrs is not None and stat.S_ISREG(attrs.permissions or 0)

    # -- transfers -------------------------------------------------------------
    async def _discard_remote(self, sftp: asyncssh.SFTPClient, path: str) -> None:
        """Remove a temporary file after a failure, if the connection still allows it."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sftp.remove(path), 5.0)

    async def _upload(
        self, sftp: asyncssh.SFTPClient, localpath: str, remotepath: str, operation: str
    ) -> None:
        """Send one local file under a temporary name, then rename it onto ``remotepath``."""
        import asyncssh

        source = await asyncio.to_thread(
            LocalSource, localpath, CHUNK_SIZE
        )  # local problems raise as they are
        try:
            temporary = temporary_sibling(remotepath)
            with self._mapped(operation, remotepath):
                try:
                    attrs = asyncssh.SFTPAttrs(permissions=source.mode)
                    async with sftp.open(temporary, "wb", attrs) as remote:
                        chunk, offset = source.first, 0
                        while chunk:
                            await remote.write(chunk, offset)
                            offset += len(chunk)
                            chunk = b"" if source.finished else await asyncio.to_thread(source.read)
                        await remote.chmod(source.mode)  # the server's umask applied at creation
                    await self._replace(sftp, temporary, remotepath, operation)
                except BaseException:
                    await self._discard_remote(sftp, temporary)
                    raise
        finally:
            if not source.finished:
                await asyncio.to_thread(source.close)

    async def _replace(
        self, sftp: asyncssh.SFTPClient, temporary: str, remotepath: str, operation: str
    ) -> None:
        import asyncssh

        try:
            await sftp.posix_rename(temporary, remotepath)
        except asyncssh.SFTPError as exc:
            attrs = await self._lstat_or_none(sftp, remotepath)
            if attrs is not None and stat.S_ISDIR(attrs.permissions or 0):
                raise self._error(
                    IsADirectoryTransportError, "Is a directory", operation, remotepath
                ) from exc
            raise

    async def _download(
        self, sftp: asyncssh.SFTPClient, remotepath: str, localpath: str, operation: str
    ) -> None:
        """Fetch one remote file into a temporary local file, then rename it onto ``localpath``.

        A file smaller than a chunk is read with one request and written with
        one trip to a worker thread.
        """
        with self._mapped(operation, remotepath):
            attrs = await sftp.stat(remotepath)
            if stat.S_ISDIR(attrs.permissions or 0):
                raise self._error(IsADirectoryTransportError, "Is a directory", operation, remotepath)
            remote = await sftp.open(remotepath, "rb")
        try:
            size = attrs.size or 0
            with self._mapped(operation, remotepath):
                # a size of 0 may be a lie (/proc files): ask for a whole chunk then.
                first = cast(bytes, await remote.read(size if 0 < size < CHUNK_SIZE else CHUNK_SIZE, 0))
            if len(first) < CHUNK_SIZE:
                await asyncio.to_thread(write_file_atomically, localpath, first, attrs.permissions)
                return
            target = await asyncio.to_thread(AtomicLocalFile, localpath)
            try:
                chunk, offset = first, 0
                while chunk:
                    await asyncio.to_thread(target.write, chunk)
                    offset += len(chunk)
                    with self._mapped(operation, remotepath):
                        chunk = cast(bytes, await remote.read(CHUNK_SIZE, offset))
                await asyncio.to_thread(target.commit, attrs.permissions)
            except BaseException:
                await asyncio.to_thread(target.discard)
                raise
        finally:
            with contextlib.suppress(Exception):
                await remote.close()

    async def put(self, localpath: LocalPath, remotepath: str) -> None:
        sftp = self._require_sftp("put", remotepath)
        source = os.fspath(localpath)
        if await asyncio.to_thread(os.path.isdir, source):
            raise IsADirectoryError(21, "Is a directory (use puttree)", source)
        await self._upload(sftp, source, remotepath, "put")

    async def get(self, remotepath: str, localpath: LocalPath) -> None:
        sftp = self._require_sftp("get", remotepath)
        await self._download(sftp, remotepath, os.fspath(localpath), "get")

    async def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        operation = "puttree"
        sftp = self._require_sftp(operation, remotepath)
        tree = await asyncio.to_thread(walk_local_tree, localpath)
        with self._mapped(operation, remotepath):
            await self._mkdir(sftp, remotepath, True, True)
            for folder in tree.folders:
                await self._mkdir(sftp, posixpath.join(remotepath, folder), False, True)
        limit = asyncio.Semaphore(TREE_CONCURRENCY)

        async def upload(name: str) -> None:
            async with limit:
                await self._upload(
                    sftp, local_join(localpath, name), posixpath.join(remotepath, name), operation
                )

        await _gather_all(upload(name) for name in tree.files)
        with self._mapped(operation, remotepath):
            for name, target in tree.symlinks:
                await self._replace_with_symlink(sftp, target, posixpath.join(remotepath, name), operation)

    async def _replace_with_symlink(
        self, sftp: asyncssh.SFTPClient, target: str, link_path: str, operation: str
    ) -> None:
        import asyncssh

        try:
            await sftp.symlink(target, link_path)
        except asyncssh.SFTPError as exc:
            attrs = await self._lstat_or_none(sftp, link_path)
            if attrs is None:
                raise
            if stat.S_ISDIR(attrs.permissions or 0):
                raise self._error(PathExistsError, "a folder is in the way", operation, link_path) from exc
            await sftp.remove(link_path)
            await sftp.symlink(target, link_path)

    async def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        operation = "gettree"
        sftp = self._require_sftp(operation, remotepath)
        folders: list[str] = []
        files: list[str] = []
        links: list[tuple[str, str]] = []
        with self._mapped(operation, remotepath):
            attrs = await sftp.stat(remotepath)
            if not stat.S_ISDIR(attrs.permissions or 0):
                raise self._error(NotADirectoryTransportError, "Not a directory", operation, remotepath)
            level = [""]
            while level:
                listings = await asyncio.gather(
                    *(sftp.readdir(posixpath.join(remotepath, rel) if rel else remotepath) for rel in level)
                )
                next_level = []
                for rel, entries in zip(level, listings, strict=True):
                    for entry in sorted(entries, key=lambda e: str(e.filename)):
                        name = str(entry.filename)
                        if name in (".", ".."):
                            continue
                        child = posixpath.join(rel, name) if rel else name
                        mode = entry.attrs.permissions or 0
                        if stat.S_ISLNK(mode):
                            links.append((child, ""))
                        elif stat.S_ISDIR(mode):
                            folders.append(child)
                            next_level.append(child)
                        elif stat.S_ISREG(mode):
                            files.append(child)
                level = next_level
            targets = await asyncio.gather(
                *(sftp.readlink(posixpath.join(remotepath, rel)) for rel, _ in links)
            )
            links = [(rel, str(target)) for (rel, _), target in zip(links, targets, strict=True)]

        def make_folders() -> None:
            os.makedirs(localpath, exist_ok=True)
            for folder in folders:
                os.makedirs(local_join(localpath, folder), exist_ok=True)

        await asyncio.to_thread(make_folders)
        limit = asyncio.Semaphore(TREE_CONCURRENCY)

        async def download(name: str) -> None:
            async with limit:
                await self._download(
                    sftp, posixpath.join(remotepath, name), local_join(localpath, name), operation
                )

        await _gather_all(download(name) for name in files)

        def make_links() -> None:
            for name, target in links:
                replace_with_symlink(target, local_join(localpath, name))

        await asyncio.to_thread(make_links)

    async def read_bytes(self, path: str) -> bytes:
        import asyncssh

        sftp = self._require_sftp("read_bytes", path)
        with self._mapped("read_bytes", path):
            try:
                async with sftp.open(path, "rb") as remote:
                    return await remote.read()
            except asyncssh.SFTPFailure as exc:  # reading a folder
                attrs = await self._stat_or_none(sftp, path)
                if attrs is not None and stat.S_ISDIR(attrs.permissions or 0):
                    raise self._error(
                        IsADirectoryTransportError, "Is a directory", "read_bytes", path
                    ) from exc
                raise

    async def write_bytes(self, path: str, data: bytes) -> None:
        sftp = self._require_sftp("write_bytes", path)
        temporary = temporary_sibling(path)
        with self._mapped("write_bytes", path):
            try:
                async with sftp.open(temporary, "wb") as remote:
                    await remote.write(bytes(data), 0)
                await self._replace(sftp, temporary, path, "write_bytes")
            except BaseException:
                await self._discard_remote(sftp, temporary)
                raise

    # -- remote-side file operations -------------------------------------------
    async def copy(self, source: str, destination: str) -> None:
        result = await self._run("copy", source, shell.copy_command(source, destination))
        if result.returncode != 0:
            sftp = self._require_sftp("copy", source)
            with self._mapped("copy", source):
                missing = await self._lstat_or_none(sftp, source) is None
            if missing:
                raise self._error(PathNotFoundError, "No such file or directory", "copy", source)
            raise shell.command_failure(result, host=self.hostname, operation="copy", path=destination)

    async def remove(self, path: str) -> None:
        import asyncssh

        sftp = self._require_sftp("remove", path)
        with self._mapped("remove", path):
            try:
                await sftp.remove(path)
            except asyncssh.SFTPFailure as exc:
                attrs = await self._lstat_or_none(sftp, path)
                if attrs is not None and stat.S_ISDIR(attrs.permissions or 0):
                    raise self._error(
                        IsADirectoryTransportError, "Is a directory (use rmtree)", "remove", path
                    ) from exc
                raise

    async def rmtree(self, path: str) -> None:
        sftp = self._require_sftp("rmtree", path)
        with self._mapped("rmtree", path):
            attrs = await sftp.lstat(path)
        if not stat.S_ISDIR(attrs.permissions or 0):
            raise self._error(NotADirectoryTransportError, "Not a directory", "rmtree", path)
        result = await self._run("rmtree", path, shell.remove_tree_command(path))
        if result.returncode != 0:
            raise shell.command_failure(result, host=self.hostname, operation="rmtree", path=path)

    async def rename(self, source: str, destination: str) -> None:
        import asyncssh

        sftp = self._require_sftp("rename", source)
        with self._mapped("rename", source):
            try:
                await sftp.posix_rename(source, destination)
            except asyncssh.SFTPError as exc:
                if await self._lstat_or_none(sftp, source) is None:
                    raise self._error(
                        PathNotFoundError, "No such file or directory", "rename", source
                    ) from exc
                target = await self._lstat_or_none(sftp, destination)
                if target is None:
                    raise self._error(PathNotFoundError, str(exc.reason), "rename", destination) from exc
                if stat.S_ISDIR(target.permissions or 0):
                    raise self._error(
                        PathExistsError, "a folder is in the way", "rename", destination
                    ) from exc
                raise

    async def chmod(self, path: str, mode: int) -> None:
        sftp = self._require_sftp("chmod", path)
        with self._mapped("chmod", path):
            await sftp.chmod(path, mode)

    async def symlink(self, target: str, link_path: str) -> None:
        import asyncssh

        sftp = self._require_sftp("symlink", link_path)
        with self._mapped("symlink", link_path):
            try:
                await sftp.symlink(target, link_path)
            except asyncssh.SFTPFailure as exc:
                if await self._lstat_or_none(sftp, link_path) is not None:
                    raise self._error(PathExistsError, "File exists", "symlink", link_path) from exc
                raise

    # -- commands --------------------------------------------------------------
    async def _run(
        self,
        operation: str,
        path: str | None,
        line: str,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run one command line on a channel of its own; no interpretation of the result."""
        import asyncssh

        conn = self._require_open(operation, path)
        if self._sessions is None:
            self._sessions = asyncio.Semaphore(self.max_sessions)
        async with self._sessions:
            with self._mapped(operation, path):
                process = await self._start_process(conn, line, stdin)
                try:
                    completed = await process.wait(check=False, timeout=timeout)
                except asyncssh.TimeoutError:
                    with contextlib.suppress(Exception):
                        process.kill()
                    raise
                finally:
                    process.close()
        stdout = completed.stdout or b""
        stderr = completed.stderr or b""
        assert isinstance(stdout, bytes) and isinstance(stderr, bytes)
        returncode = completed.returncode if completed.returncode is not None else -1
        return CommandResult(
            returncode, stdout.decode("utf-8", errors="replace"), stderr.decode("utf-8", errors="replace")
        )

    async def _start_process(
        self, conn: asyncssh.SSHClientConnection, line: str, stdin: bytes | None
    ) -> asyncssh.SSHClientProcess[bytes]:
        """Open a session channel for ``line``; wait and retry while the server refuses more sessions.

        OpenSSH refuses a channel beyond ``MaxSessions`` (10 by default, less on
        some login nodes; it answers "open failed", code 2) and frees a slot
        only a moment after a command ends.
        """
        import asyncssh

        delay = 0.02
        deadline = time.monotonic() + SESSION_WAIT
        while True:
            try:
                if stdin:
                    return await conn.create_process(line, input=stdin, encoding=None)
                return await conn.create_process(line, stdin=asyncssh.DEVNULL, encoding=None)
            except asyncssh.ChannelOpenError as exc:
                refused = (asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, asyncssh.OPEN_CONNECT_FAILED)
                if exc.code not in refused or conn.is_closed() or time.monotonic() > deadline:
                    raise
                logger.debug(
                    "%s refused a session (%s); retrying in %.2f s", self.hostname, exc.reason, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        operation = "exec_command_wait"
        line, marker = shell.command_line(command, workdir, timeout)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        started = time.monotonic()
        backstop = None if timeout is None else timeout + shell.CLIENT_GRACE
        try:
            result = await self._run(operation, workdir, line, data, backstop)
        except TransportTimeoutError:
            raise self._timeout(command, timeout, workdir) from None
        if shell.timed_out(result.returncode, time.monotonic() - started, timeout):
            raise self._timeout(command, timeout, workdir)
        if workdir is not None and shell.workdir_failed(result, marker):
            raise await self._workdir_error(workdir)
        return result

    def _timeout(self, command: str, timeout: float | None, workdir: str | None) -> TransportTimeoutError:
        return TransportTimeoutError(
            f"command still running after {timeout} s, killed: {command[:200]}",
            host=self.hostname,
            operation="exec_command_wait",
            path=workdir,
        )

    async def _workdir_error(self, workdir: str) -> TransportError:
        operation = "exec_command_wait"
        sftp = self._require_sftp(operation, workdir)
        with self._mapped(operation, workdir):
            attrs = await self._stat_or_none(sftp, workdir)
        if attrs is None:
            return self._error(PathNotFoundError, "no such working directory", operation, workdir)
        if not stat.S_ISDIR(attrs.permissions or 0):
            return self._error(
                NotADirectoryTransportError, "the working directory is not a folder", operation, workdir
            )
        return self._error(PermissionDeniedError, "cannot enter the working directory", operation, workdir)

    async def whoami(self) -> str:
        if self._user is None:
            result = await self._run("whoami", None, shell.id_command())
            if result.returncode != 0:
                raise self._error(TransportError, f"`id -un` failed: {result.stderr.strip()}", "whoami", None)
            self._user = result.stdout.strip()
        return self._user


async def _gather_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; if one fails, cancel the rest and raise the first error."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    if not tasks:
        return
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
