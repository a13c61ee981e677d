"""The ``ssh-blocking`` transport: OpenSSH servers through paramiko, blocking.

This is the path most existing transport plugins would take: a blocking
library behind the blocking twin of the contract.  The engine never calls
it directly; it wraps it with :func:`plait.transports.as_async`, which runs
every call in this transport's own thread — paramiko's SFTP client must not
be used from two threads at once.  Used directly, an instance belongs to one
thread at a time (except :meth:`BlockingSshTransport.close`, which may be
called from another thread to break a call that hangs).

Options and host-key rules are those of the ``ssh`` plugin: ``RejectPolicy``
for unknown keys unless ``allow_unknown_host_key`` (then ``AutoAddPolicy``,
kept in memory: the known_hosts file is never rewritten); a key that differs
from known_hosts is always refused.

paramiko's keepalive only *sends*; it cannot notice a server that stopped
answering.  So the SFTP channel gets a read time-out of
``keepalive_interval * keepalive_count_max`` seconds: a server that leaves
an SFTP request unanswered that long is declared lost, the connection is
closed and the call raises :class:`ConnectionLostError`.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import getpass
import logging
import os
import posixpath
import select
import socket
import stat
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import _remote_shell as shell
from ._local_files import (
    AtomicLocalFile,
    local_join,
    replace_with_symlink,
    temporary_sibling,
    walk_local_tree,
)
from ._ssh_options import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_KNOWN_HOSTS_FILE,
    JumpHost,
    SshOptions,
    changed_host_key_error,
    parse_proxy_jump,
    unknown_host_key_error,
)
from .contract import BlockingTransport, CommandResult, FileAttributes, LocalPath
from .error_mapping import translate
from .errors import (
    ConnectionLostError,
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
    import paramiko

__all__ = ["BlockingSshTransport"]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
#: SFTP read requests paramiko keeps in flight while downloading.
PREFETCH_REQUESTS = 64


def _attributes(attrs: paramiko.SFTPAttributes) -> FileAttributes:
    return FileAttributes(
        size=attrs.st_size or 0,
        mode=attrs.st_mode or 0,
        mtime=float(attrs.st_mtime or 0),
        uid=attrs.st_uid,
        gid=attrs.st_gid,
    )


def _key_description(key: paramiko.PKey) -> str:
    return f"{key.get_name()} key {key.fingerprint}"


def _host_and_port(hostname: str) -> tuple[str, int | None]:
    """Split paramiko's known_hosts name (``host`` or ``[host]:port``)."""
    if hostname.startswith("[") and "]:" in hostname:
        host, port = hostname[1:].split("]:")
        return host, int(port)
    return hostname, None


class _Failure(Exception):
    """Carries a HostKeyError out of a paramiko policy callback (paramiko re-raises as it is)."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


def _policies() -> tuple[type, type]:
    import paramiko

    class RefuseUnknownHostKey(paramiko.RejectPolicy):
        def __init__(self, options: SshOptions) -> None:
            self.options = options

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
            host, port = _host_and_port(hostname)
            raise _Failure(
                unknown_host_key_error(
                    host, port, _key_description(key), self.options.known_hosts_file, self.options.hostname
                )
            )

    class AcceptUnknownHostKey(paramiko.AutoAddPolicy):
        """AutoAddPolicy that remembers the key for this connection only, never in the user's file."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            logger.warning("accepting the unknown host key of %s (%s)", hostname, _key_description(key))
            client.get_host_keys().add(hostname, key.get_name(), key)

    return RefuseUnknownHostKey, AcceptUnknownHostKey


class BlockingSshTransport(BlockingTransport):
    """Reach a computer over SSH with paramiko.  See :class:`plait.transports.BlockingTransport`.

    Takes the same arguments as :class:`plait.transports.ssh.SshTransport`
    (except ``max_sessions``: calls run one at a time).  ``~/.ssh/config``
    is read with paramiko's parser: ``HostName``, ``Port``, ``User``,
    ``IdentityFile`` and ``ProxyJump`` are honoured; explicit arguments win.

    Raises:
        ValueError: an option is invalid (named in the message).
    """

    plugin_name = "ssh-blocking"
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
    ) -> None:
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
        self._client: paramiko.SSHClient | None = None
        self._jumps: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None
        self._user: str | None = None

    def __repr__(self) -> str:
        return f"BlockingSshTransport({self.hostname!r})"

    # -- lifecycle -------------------------------------------------------------
    def _resolve(self, hostname: str, port: int | None, username: str | None) -> dict[str, Any]:
        """Apply ``~/.ssh/config`` to one hop; explicit values win."""
        import paramiko

        found: dict[str, Any] = {}
        if self.options.config_file:
            found = dict(paramiko.SSHConfig.from_path(self.options.config_file).lookup(hostname))
        return {
            "hostname": found.get("hostname", hostname),
            "port": port if port is not None else int(found.get("port", 22)),
            "username": username or found.get("user") or getpass.getuser(),
            "identityfile": found.get("identityfile"),
            "proxyjump": found.get("proxyjump"),
        }

    def _new_client(self) -> paramiko.SSHClient:
        import paramiko

        client = paramiko.SSHClient()
        known_hosts = self.options.known_hosts_file
        if known_hosts and os.path.isfile(known_hosts):
            client.load_host_keys(known_hosts)
        refuse, accept = _policies()
        client.set_missing_host_key_policy(
            accept() if self.options.allow_unknown_host_key else refuse(self.options)
        )
        return client

    def _connect(self, hop: dict[str, Any], sock: Any) -> paramiko.SSHClient:
        import paramiko

        opts = self.options
        keys: list[str] | None = (
            list(opts.key_filenames) if opts.key_filenames is not None else hop["identityfile"]
        )
        if keys:
            keys = [os.path.expanduser(k) for k in keys if os.path.isfile(os.path.expanduser(k))]
        client = self._new_client()
        try:
            client.connect(
                hop["hostname"],
                hop["port"],
                username=hop["username"],
                # types-paramiko says str, but paramiko takes a list of filenames too
                key_filename=keys or None,  # type: ignore[arg-type]
                allow_agent=opts.use_agent,
                look_for_keys=opts.key_filenames is None,
                timeout=opts.connect_timeout,
                banner_timeout=opts.connect_timeout,
                auth_timeout=opts.connect_timeout,
                channel_timeout=opts.connect_timeout,
                sock=sock,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise _Failure(
                changed_host_key_error(
                    hop["hostname"],
                    hop["port"],
                    _key_description(exc.key),
                    opts.known_hosts_file,
                    opts.hostname,
                )
            ) from exc
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        assert transport is not None
        if isinstance(transport.sock, socket.socket):
            # paramiko leaves Nagle's algorithm on: every request/reply then waits for a delayed ACK.
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if opts.keepalive_interval:
            transport.set_keepalive(max(1, round(opts.keepalive_interval)))
        return client

    def open(self) -> None:
        """Connect, authenticate and start the SFTP session.  A no-op when already open.

        Raises:
            ConnectionFailedError: the host (or a jump host) cannot be reached.
            AuthenticationError: every key was refused.
            HostKeyError: the host key is unknown (and not allowed) or changed.
        """
        if self.is_open:
            return
        self._drop()
        opts = self.options
        try:
            target = self._resolve(opts.hostname, opts.port, opts.username)
            jumps: tuple[JumpHost, ...] = opts.proxy_jump
            if not jumps and target["proxyjump"]:
                jumps = parse_proxy_jump(target["proxyjump"])
            hops = [self._resolve(j.hostname, j.port, j.username) for j in jumps] + [target]
            sock = None
            for index, hop in enumerate(hops):
                client = self._connect(hop, sock)
                if index == len(hops) - 1:
                    self._client = client
                    break
                self._jumps.append(client)
                following = hops[index + 1]
                transport = client.get_transport()
                assert transport is not None
                sock = transport.open_channel(
                    "direct-tcpip", (following["hostname"], following["port"]), ("127.0.0.1", 0)
                )
            assert self._client is not None
            self._sftp = self._client.open_sftp()
            if opts.keepalive_interval:
                channel = self._sftp.get_channel()
                assert channel is not None  # open_sftp() made the client on a channel
                channel.settimeout(opts.keepalive_interval * opts.keepalive_count_max)
        except _Failure as failure:
            self._drop()
            raise failure.error from failure.__cause__
        except Exception as exc:
            self._drop()
            error = translate(exc, host=self.hostname, operation="open")
            if error is None:
                raise
            raise error from exc
        except BaseException:
            self._drop()
            raise
        self._user = None

    def _drop(self) -> None:
        sftp, self._sftp = self._sftp, None
        clients = [c for c in (self._client, *reversed(self._jumps)) if c is not None]
        self._client, self._jumps = None, []
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        """Close the connection; a no-op when not open.  Safe to call from another thread."""
        self._drop()

    @property
    def is_open(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    # -- plumbing --------------------------------------------------------------
    def _require_sftp(self, operation: str, path: str | None) -> paramiko.SFTPClient:
        self._require_client(operation, path)
        sftp = self._sftp
        if sftp is None:
            raise TransportClosedError(
                "the transport is not open", host=self.hostname, operation=operation, path=path
            )
        return sftp

    def _require_client(self, operation: str, path: str | None) -> paramiko.SSHClient:
        client = self._client
        if client is None:
            raise TransportClosedError(
                "the transport is not open", host=self.hostname, operation=operation, path=path
            )
        if not self.is_open:
            raise ConnectionLostError(
                "the connection was lost", host=self.hostname, operation=operation, path=path
            )
        return client

    @contextlib.contextmanager
    def _mapped(self, operation: str, path: str | None) -> Iterator[None]:
        """Translate paramiko/OS failures in the body into the contract's errors."""
        try:
            yield
        except Exception as exc:
            if isinstance(exc, TransportError):
                raise
            if isinstance(exc, TimeoutError) and self._client is not None:
                # The SFTP channel's read time-out: the server stopped answering.
                self._drop()
                raise ConnectionLostError(
                    "the server did not answer in time; the connection was closed",
                    host=self.hostname,
                    operation=operation,
                    path=path,
                ) from exc
            error = translate(exc, host=self.hostname, operation=operation, path=path)
            if error is None:
                raise
            if self._client is None:
                error = TransportClosedError(
                    f"the transport was closed ({error.reason})",
                    host=self.hostname,
                    operation=operation,
                    path=path,
                )
            elif not self.is_open:
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

    @staticmethod
    def _is_generic(exc: OSError) -> bool:
        """paramiko raises SFTP's generic failure as an OSError without errno."""
        return exc.errno is None

    def _lstat_or_none(self, sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
        try:
            return sftp.lstat(path)
        except FileNotFoundError:
            return None

    def _stat_or_none(self, sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
        try:
            return sftp.stat(path)
        except FileNotFoundError:
            return None

    # -- folders ---------------------------------------------------------------
    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        sftp = self._require_sftp("mkdir", path)
        with self._mapped("mkdir", path):
            self._mkdir(sftp, path, parents, exist_ok)

    def _mkdir(self, sftp: paramiko.SFTPClient, path: str, parents: bool, exist_ok: bool) -> None:
        try:
            sftp.mkdir(path)
        except FileNotFoundError:
            parent = posixpath.dirname(path.rstrip("/"))
            if not parents or parent in ("", "/", path):
                raise
            self._mkdir(sftp, parent, True, True)
            self._mkdir(sftp, path, False, exist_ok)
        except OSError as exc:
            if not self._is_generic(exc) or self._lstat_or_none(sftp, path) is None:
                raise
            attrs = self._stat_or_none(sftp, path)
            if exist_ok and attrs is not None and stat.S_ISDIR(attrs.st_mode or 0):
                return
            raise self._error(PathExistsError, "File exists", "mkdir", path) from exc

    def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        return list(self._listdir("listdir", path, pattern))

    def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        return self._listdir("listdir_with_attributes", path, pattern)

    def _listdir(self, operation: str, path: str, pattern: str | None) -> dict[str, FileAttributes]:
        sftp = self._require_sftp(operation, path)
        with self._mapped(operation, path):
            try:
                entries = sftp.listdir_attr(path)
            except FileNotFoundError as exc:  # OpenSSH folds ENOTDIR into "no such file"
                if self._lstat_or_none(sftp, path) is not None:
                    raise self._error(
                        NotADirectoryTransportError, "Not a directory", operation, path
                    ) from exc
                raise
        found = {entry.filename: _attributes(entry) for entry in entries if entry.filename not in (".", "..")}
        names = sorted(found)
        if pattern is not None:
            names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        return {name: found[name] for name in names}

    # -- queries ---------------------------------------------------------------
    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        sftp = self._require_sftp("stat", path)
        with self._mapped("stat", path):
            return _attributes(sftp.stat(path) if follow_symlinks else sftp.lstat(path))

    def exists(self, path: str) -> bool:
        sftp = self._require_sftp("exists", path)
        with self._mapped("exists", path):
            return self._lstat_or_none(sftp, path) is not None

    def isdir(self, path: str) -> bool:
        sftp = self._require_sftp("isdir", path)
        with self._mapped("isdir", path):
            attrs = self._stat_or_none(sftp, path)
        return attrs is not None and stat.S_ISDIR(attrs.st_mode or 0)

    def isfile(self, path: str) -> bool:
        sftp = self._require_sftp("isfile", path)
        with self._mapped("isfile", path):
            attrs = self._stat_or_none(sftp, path)
        return attrs is not None and stat.S_ISREG(attrs.st_mode or 0)

    # -- transfers -------------------------------------------------------------
    def _discard_remote(self, sftp: paramiko.SFTPClient, path: str) -> None:
        with contextlib.suppress(Exception):
            if self.is_open:
                sftp.remove(path)

    def _replace(self, sftp: paramiko.SFTPClient, temporary: str, remotepath: str, operation: str) -> None:
        try:
            sftp.posix_rename(temporary, remotepath)
        except OSError as exc:
            attrs = self._lstat_or_none(sftp, remotepath)
            if attrs is not None and stat.S_ISDIR(attrs.st_mode or 0):
                raise self._error(
                    IsADirectoryTransportError, "Is a directory", operation, remotepath
                ) from exc
            raise

    def _upload(self, sftp: paramiko.SFTPClient, localpath: str, remotepath: str, operation: str) -> None:
        with open(localpath, "rb") as reader:  # local problems raise as they are
            mode = stat.S_IMODE(os.fstat(reader.fileno()).st_mode)
            temporary = temporary_sibling(remotepath)
            with self._mapped(operation, remotepath):
                try:
                    with sftp.open(temporary, "wb") as remote:
                        remote.set_pipelined(True)
                        while chunk := reader.read(CHUNK_SIZE):
                            remote.write(chunk)
                        remote.chmod(mode)
                    self._replace(sftp, temporary, remotepath, operation)
                except BaseException:
                    self._discard_remote(sftp, temporary)
                    raise

    def _download(self, sftp: paramiko.SFTPClient, remotepath: str, localpath: str, operation: str) -> None:
        with self._mapped(operation, remotepath):
            attrs = sftp.stat(remotepath)
            if stat.S_ISDIR(attrs.st_mode or 0):
                raise self._error(IsADirectoryTransportError, "Is a directory", operation, remotepath)
            remote = sftp.open(remotepath, "rb")
        try:
            target = AtomicLocalFile(localpath)
            try:
                with self._mapped(operation, remotepath):
                    remote.prefetch(attrs.st_size, PREFETCH_REQUESTS)
                    while chunk := remote.read(CHUNK_SIZE):
                        target.write(chunk)
                target.commit(attrs.st_mode)
            except BaseException:
                target.discard()
                raise
        finally:
            with contextlib.suppress(Exception):
                remote.close()

    def put(self, localpath: LocalPath, remotepath: str) -> None:
        sftp = self._require_sftp("put", remotepath)
        source = os.fspath(localpath)
        if os.path.isdir(source):
            raise IsADirectoryError(errno.EISDIR, "Is a directory (use puttree)", source)
        self._upload(sftp, source, remotepath, "put")

    def get(self, remotepath: str, localpath: LocalPath) -> None:
        sftp = self._require_sftp("get", remotepath)
        self._download(sftp, remotepath, os.fspath(localpath), "get")

    def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        operation = "puttree"
        sftp = self._require_sftp(operation, remotepath)
        tree = walk_local_tree(localpath)
        with self._mapped(operation, remotepath):
            self._mkdir(sftp, remotepath, True, True)
            for folder in tree.folders:
                self._mkdir(sftp, posixpath.join(remotepath, folder), False, True)
        for name in tree.files:
            self._upload(sftp, local_join(localpath, name), posixpath.join(remotepath, name), operation)
        with self._mapped(operation, remotepath):
            for name, target in tree.symlinks:
                self._replace_with_symlink(sftp, target, posixpath.join(remotepath, name), operation)

    def _replace_with_symlink(
        self, sftp: paramiko.SFTPClient, target: str, link_path: str, operation: str
    ) -> None:
        try:
            sftp.symlink(target, link_path)
        except OSError as exc:
            attrs = self._lstat_or_none(sftp, link_path)
            if attrs is None:
                raise
            if stat.S_ISDIR(attrs.st_mode or 0):
                raise self._error(PathExistsError, "a folder is in the way", operation, link_path) from exc
            sftp.remove(link_path)
            sftp.symlink(target, link_path)

    def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        operation = "gettree"
        sftp = self._require_sftp(operation, remotepath)
        folders: list[str] = []
        files: list[str] = []
        links: list[tuple[str, str]] = []
        with self._mapped(operation, remotepath):
            attrs = sftp.stat(remotepath)
            if not stat.S_ISDIR(attrs.st_mode or 0):
                raise self._error(NotADirectoryTransportError, "Not a directory", operation, remotepath)
            pending = [""]
            while pending:
                rel = pending.pop(0)
                folder = posixpath.join(remotepath, rel) if rel else remotepath
                for entry in sorted(sftp.listdir_attr(folder), key=lambda e: e.filename):
                    if entry.filename in (".", ".."):
                        continue
                    child = posixpath.join(rel, entry.filename) if rel else entry.filename
                    mode = entry.st_mode or 0
                    if stat.S_ISLNK(mode):
                        links.append((child, sftp.readlink(posixpath.join(remotepath, child)) or ""))
                    elif stat.S_ISDIR(mode):
                        folders.append(child)
                        pending.append(child)
                    elif stat.S_ISREG(mode):
                        files.append(child)
        os.makedirs(localpath, exist_ok=True)
        for folder_name in folders:
            os.makedirs(local_join(localpath, folder_name), exist_ok=True)
        for name in files:
            self._download(sftp, posixpath.join(remotepath, name), local_join(localpath, name), operation)
        for name, target in links:
            replace_with_symlink(target, local_join(localpath, name))

    def read_bytes(self, path: str) -> bytes:
        sftp = self._require_sftp("read_bytes", path)
        with self._mapped("read_bytes", path):
            try:
                with sftp.open(path, "rb") as remote:
                    remote.prefetch(None, PREFETCH_REQUESTS)
                    return bytes(remote.read())
            except OSError as exc:
                if not self._is_generic(exc):
                    raise
                attrs = self._stat_or_none(sftp, path)
                if attrs is not None and stat.S_ISDIR(attrs.st_mode or 0):
                    raise self._error(
                        IsADirectoryTransportError, "Is a directory", "read_bytes", path
                    ) from exc
                raise

    def write_bytes(self, path: str, data: bytes) -> None:
        sftp = self._require_sftp("write_bytes", path)
        temporary = temporary_sibling(path)
        with self._mapped("write_bytes", path):
            try:
                with sftp.open(temporary, "wb") as remote:
                    remote.set_pipelined(True)
                    remote.write(bytes(data))
                self._replace(sftp, temporary, path, "write_bytes")
            except BaseException:
                self._discard_remote(sftp, temporary)
                raise

    # -- remote-side file operations -------------------------------------------
    def copy(self, source: str, destination: str) -> None:
        result = self._run("copy", source, shell.copy_command(source, destination))
        if result.returncode != 0:
            sftp = self._require_sftp("copy", source)
            with self._mapped("copy", source):
                missing = self._lstat_or_none(sftp, source) is None
            if missing:
                raise self._error(PathNotFoundError, "No such file or directory", "copy", source)
            raise shell.command_failure(result, host=self.hostname, operation="copy", path=destination)

    def remove(self, path: str) -> None:
        sftp = self._require_sftp("remove", path)
        with self._mapped("remove", path):
            try:
                sftp.remove(path)
            except OSError as exc:
                if not self._is_generic(exc):
                    raise
                attrs = self._lstat_or_none(sftp, path)
                if attrs is not None and stat.S_ISDIR(attrs.st_mode or 0):
                    raise self._error(
                        IsADirectoryTransportError, "Is a directory (use rmtree)", "remove", path
                    ) from exc
                raise

    def rmtree(self, path: str) -> None:
        sftp = self._require_sftp("rmtree", path)
        with self._mapped("rmtree", path):
            attrs = sftp.lstat(path)
        if not stat.S_ISDIR(attrs.st_mode or 0):
            raise self._error(NotADirectoryTransportError, "Not a directory", "rmtree", path)
        result = self._run("rmtree", path, shell.remove_tree_command(path))
        if result.returncode != 0:
            raise shell.command_failure(result, host=self.hostname, operation="rmtree", path=path)

    def rename(self, source: str, destination: str) -> None:
        sftp = self._require_sftp("rename", source)
        with self._mapped("rename", source):
            try:
                sftp.posix_rename(source, destination)
            except OSError as exc:
                if self._lstat_or_none(sftp, source) is None:
                    raise self._error(
                        PathNotFoundError, "No such file or directory", "rename", source
                    ) from exc
                target = self._lstat_or_none(sftp, destination)
                if target is None:
                    raise self._error(PathNotFoundError, str(exc), "rename", destination) from exc
                if stat.S_ISDIR(target.st_mode or 0):
                    raise self._error(
                        PathExistsError, "a folder is in the way", "rename", destination
                    ) from exc
                raise

    def chmod(self, path: str, mode: int) -> None:
        sftp = self._require_sftp("chmod", path)
        with self._mapped("chmod", path):
            sftp.chmod(path, mode)

    def symlink(self, target: str, link_path: str) -> None:
        sftp = self._require_sftp("symlink", link_path)
        with self._mapped("symlink", link_path):
            try:
                sftp.symlink(target, link_path)
            except OSError as exc:
                if self._is_generic(exc) and self._lstat_or_none(sftp, link_path) is not None:
                    raise self._error(PathExistsError, "File exists", "symlink", link_path) from exc
                raise

    # -- commands --------------------------------------------------------------
    def _run(
        self,
        operation: str,
        path: str | None,
        line: str,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run one command line on a channel of its own; no interpretation of the result."""
        client = self._require_client(operation, path)
        transport = client.get_transport()
        assert transport is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mapped(operation, path):
            channel = transport.open_session(timeout=self.options.connect_timeout)
            try:
                channel.exec_command(line)
                returncode, stdout, stderr = self._communicate(channel, stdin, deadline, operation, path)
            finally:
                channel.close()
        return CommandResult(
            returncode, stdout.decode("utf-8", errors="replace"), stderr.decode("utf-8", errors="replace")
        )

    def _communicate(
        self,
        channel: paramiko.Channel,
        stdin: bytes | None,
        deadline: float | None,
        operation: str,
        path: str | None,
    ) -> tuple[int, bytes, bytes]:
        pending = memoryview(stdin) if stdin else None
        if pending is None:
            channel.shutdown_write()
        stdout, stderr = bytearray(), bytearray()
        channel.setblocking(False)
        while True:
            if pending is not None and channel.send_ready():
                sent = channel.send(bytes(pending[:65536]))
                pending = pending[sent:] or None
                if pending is None:
                    channel.shutdown_write()
            while channel.recv_ready():
                stdout += channel.recv(65536)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
            # done once the output is closed too: sshd sends the exit status when the command's
            # shell exits, and what it left running may still write (under load even the shell's
            # own last output came after the status)
            if (
                channel.exit_status_ready()
                and (channel.eof_received or channel.closed)
                and not channel.recv_ready()
                and not channel.recv_stderr_ready()
            ):
                return channel.recv_exit_status(), bytes(stdout), bytes(stderr)
            if deadline is not None and time.monotonic() > deadline:
                raise self._error(
                    TransportTimeoutError, "the command did not finish in time", operation, path
                )
            if not self.is_open:
                raise self._error(ConnectionLostError, "the connection was lost", operation, path)
            if channel.eof_received and not channel.exit_status_ready():
                channel.status_event.wait(0.05)  # output complete, the exit status is on its way
            else:
                select.select([channel], [], [], 0.001 if pending is not None else 0.05)

    def exec_command_wait(
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
            result = self._run(operation, workdir, line, data, backstop)
        except TransportTimeoutError:
            raise self._timeout(command, timeout, workdir) from None
        if shell.timed_out(result.returncode, time.monotonic() - started, timeout):
            raise self._timeout(command, timeout, workdir)
        if workdir is not None and shell.workdir_failed(result, marker):
            raise self._workdir_error(workdir)
        return result

    def _timeout(self, command: str, timeout: float | None, workdir: str | None) -> TransportTimeoutError:
        return TransportTimeoutError(
            f"command still running after {timeout} s, killed: {command[:200]}",
            host=self.hostname,
            operation="exec_command_wait",
            path=workdir,
        )

    def _workdir_error(self, workdir: str) -> TransportError:
        operation = "exec_command_wait"
        sftp = self._require_sftp(operation, workdir)
        with self._mapped(operation, workdir):
            attrs = self._stat_or_none(sftp, workdir)
        if attrs is None:
            return self._error(PathNotFoundError, "no such working directory", operation, workdir)
        if not stat.S_ISDIR(attrs.st_mode or 0):
            return self._error(
                NotADirectoryTransportError, "the working directory is not a folder", operation, workdir
            )
        return self._error(PermissionDeniedError, "cannot enter the working directory", operation, workdir)

    def whoami(self) -> str:
        if self._user is None:
            result = self._run("whoami", None, shell.id_command())
            if result.returncode != 0:
                raise self._error(TransportError, f"`id -un` failed: {result.stderr.strip()}", "whoami", None)
            self._user = result.stdout.strip()
        return self._user
