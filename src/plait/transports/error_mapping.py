"""Tables that turn a library's failure into a :class:`~plait.transports.errors.TransportError`.

A transport plugin never lets ``OSError``, an asyncssh error or a paramiko
error escape: it wraps every library call in :func:`map_exceptions`, which
looks the failure up in the tables below and raises the matching
:class:`TransportError` subclass ``from`` the original, so the library's
error stays reachable as ``__cause__`` for debugging.

The tables are data, in one place, so that a reader can check what becomes
what, and so that all plugins agree:

* :data:`ERRNO_ERRORS` — ``errno`` of an ``OSError`` (local file system, or
  paramiko's SFTP errors, which carry ``ENOENT``/``EACCES``).
* :data:`SFTP_STATUS_ERRORS` — SFTP status codes (draft-ietf-secsh-filexfer),
  as carried by asyncssh's ``SFTPError.code``.  OpenSSH's server only sends
  a few of them and folds the rest into ``FX_FAILURE`` (4), which maps to a
  plain :class:`TransportError`; plugins then look at the path to say more
  (for example "it exists, so ``mkdir`` failed because of that").
* :func:`asyncssh_errors` and :func:`paramiko_errors` — exception classes of
  each library, most specific first.  They are built on first use, so
  importing this module never imports asyncssh or paramiko.

One rule applies on top of the tables: while opening a connection
(``operation="open"``) a lost connection is reported as
:class:`ConnectionFailedError` — it never was established.
"""

from __future__ import annotations

import errno
import functools
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from .errors import (
    AuthenticationError,
    ConnectionFailedError,
    ConnectionLostError,
    HostKeyError,
    IsADirectoryTransportError,
    NotADirectoryTransportError,
    PathExistsError,
    PathNotFoundError,
    PermissionDeniedError,
    TransportError,
    TransportTimeoutError,
)

__all__ = [
    "ERRNO_ERRORS",
    "SFTP_STATUS_ERRORS",
    "asyncssh_errors",
    "map_exceptions",
    "paramiko_errors",
    "translate",
]

ErrorTable = Sequence[tuple[type[BaseException], type[TransportError]]]

#: ``errno`` → error class.  An errno missing here gives a plain TransportError.
ERRNO_ERRORS: Mapping[int, type[TransportError]] = {
    errno.ENOENT: PathNotFoundError,
    errno.ENOTDIR: NotADirectoryTransportError,
    errno.EISDIR: IsADirectoryTransportError,
    errno.EEXIST: PathExistsError,
    errno.ENOTEMPTY: PathExistsError,
    errno.EACCES: PermissionDeniedError,
    errno.EPERM: PermissionDeniedError,
    errno.EROFS: PermissionDeniedError,
    errno.ETIMEDOUT: TransportTimeoutError,
    errno.ECONNREFUSED: ConnectionFailedError,
    errno.EHOSTUNREACH: ConnectionFailedError,
    errno.ENETUNREACH: ConnectionFailedError,
    errno.EHOSTDOWN: ConnectionFailedError,
    errno.ECONNRESET: ConnectionLostError,
    errno.ECONNABORTED: ConnectionLostError,
    errno.EPIPE: ConnectionLostError,
}

#: SFTP status code → error class (codes from draft-ietf-secsh-filexfer-13, section 9.1).
SFTP_STATUS_ERRORS: Mapping[int, type[TransportError]] = {
    2: PathNotFoundError,  # SSH_FX_NO_SUCH_FILE
    3: PermissionDeniedError,  # SSH_FX_PERMISSION_DENIED
    6: ConnectionLostError,  # SSH_FX_NO_CONNECTION
    7: ConnectionLostError,  # SSH_FX_CONNECTION_LOST
    10: PathNotFoundError,  # SSH_FX_NO_SUCH_PATH
    11: PathExistsError,  # SSH_FX_FILE_ALREADY_EXISTS
    12: PermissionDeniedError,  # SSH_FX_WRITE_PROTECT
    18: PathExistsError,  # SSH_FX_DIR_NOT_EMPTY
    19: NotADirectoryTransportError,  # SSH_FX_NOT_A_DIRECTORY
    22: PermissionDeniedError,  # SSH_FX_CANNOT_DELETE
    24: IsADirectoryTransportError,  # SSH_FX_FILE_IS_A_DIRECTORY
}


@functools.cache
def asyncssh_errors() -> ErrorTable:
    """asyncssh exception classes → error classes, most specific first.

    SFTP errors are not listed: they carry a status code, looked up in
    :data:`SFTP_STATUS_ERRORS`.
    """
    import asyncssh

    return (
        (asyncssh.HostKeyNotVerifiable, HostKeyError),
        (asyncssh.PermissionDenied, AuthenticationError),
        (asyncssh.KeyImportError, AuthenticationError),
        (asyncssh.KeyEncryptionError, AuthenticationError),
        (asyncssh.TimeoutError, TransportTimeoutError),
        (asyncssh.ConnectionLost, ConnectionLostError),
        (asyncssh.DisconnectError, ConnectionLostError),
        (asyncssh.ChannelOpenError, TransportError),
    )


@functools.cache
def paramiko_errors() -> ErrorTable:
    """paramiko exception classes → error classes, most specific first."""
    import paramiko
    from paramiko.ssh_exception import NoValidConnectionsError

    return (
        (paramiko.BadHostKeyException, HostKeyError),
        (paramiko.PasswordRequiredException, AuthenticationError),
        (paramiko.AuthenticationException, AuthenticationError),
        (NoValidConnectionsError, ConnectionFailedError),
        (paramiko.ChannelException, TransportError),
        (paramiko.SSHException, ConnectionLostError),
    )


def _library_class(exc: BaseException) -> type[TransportError] | None:
    module = type(exc).__module__
    table: ErrorTable
    if module.startswith("asyncssh"):
        code = getattr(exc, "code", None)
        import asyncssh

        if isinstance(exc, asyncssh.SFTPError) and isinstance(code, int):
            return SFTP_STATUS_ERRORS.get(code, TransportError)
        table = asyncssh_errors()
    elif module.startswith("paramiko"):
        table = paramiko_errors()
    else:
        return None
    for library_class, error_class in table:
        if isinstance(exc, library_class):
            return error_class
    return TransportError if isinstance(exc, Exception) else None


def _classify(exc: BaseException) -> type[TransportError] | None:
    """The error class for ``exc``, or None when ``exc`` is not a transport failure."""
    library = _library_class(exc)
    if library is not None:
        return library
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError and socket.timeout too
        return TransportTimeoutError
    if isinstance(exc, socket.gaierror):  # the host name does not resolve: a connection failure
        return ConnectionFailedError
    if isinstance(exc, OSError):
        return ERRNO_ERRORS.get(exc.errno or 0, TransportError)
    if isinstance(exc, EOFError):  # paramiko's way of saying the server went away
        return ConnectionLostError
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    reason = getattr(exc, "reason", None)  # asyncssh errors keep the server's text here
    text = reason if isinstance(reason, str) and reason else str(exc)
    return text or type(exc).__name__


def translate(
    exc: BaseException,
    *,
    host: str | None,
    operation: str | None,
    path: str | None = None,
) -> TransportError | None:
    """Return the :class:`TransportError` that stands for ``exc``, or None.

    None means "not a transport failure" (a programming error such as
    ``TypeError``, or ``CancelledError``); the caller lets it propagate as it is.
    A :class:`TransportError` is returned unchanged.
    """
    if isinstance(exc, TransportError):
        return exc
    error_class = _classify(exc)
    if error_class is None:
        return None
    if operation == "open" and error_class is ConnectionLostError:
        error_class = ConnectionFailedError
    return error_class(_reason(exc), host=host, operation=operation, path=path)


@contextmanager
def map_exceptions(*, host: str | None, operation: str, path: str | None = None) -> Iterator[None]:
    """Translate library failures raised in the ``with`` body (sync or ``await``-ing code).

    ``TransportError`` passes through untouched; anything :func:`translate`
    does not know (bugs, cancellation) propagates unchanged.
    """
    try:
        yield
    except Exception as exc:
        error = translate(exc, host=host, operation=operation, path=path)
        if error is None or error is exc:
            raise
        raise error from exc
