"""The translation tables: which library failure becomes which TransportError."""

from __future__ import annotations

import asyncio
import errno

import asyncssh
import paramiko
import pytest
from paramiko.ssh_exception import NoValidConnectionsError

from plait.transports.error_mapping import map_exceptions, translate
from plait.transports.errors import (
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


def raised(exc: BaseException, operation: str = "stat") -> TransportError:
    with (
        pytest.raises(TransportError) as caught,
        map_exceptions(host="cluster", operation=operation, path="/p"),
    ):
        raise exc
    assert caught.value.__cause__ is exc
    assert (caught.value.host, caught.value.operation, caught.value.path) == ("cluster", operation, "/p")
    return caught.value


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOENT, PathNotFoundError),
        (errno.ENOTDIR, NotADirectoryTransportError),
        (errno.EISDIR, IsADirectoryTransportError),
        (errno.EEXIST, PathExistsError),
        (errno.ENOTEMPTY, PathExistsError),
        (errno.EACCES, PermissionDeniedError),
        (errno.EPERM, PermissionDeniedError),
        (errno.EROFS, PermissionDeniedError),
        (errno.ECONNRESET, ConnectionLostError),
        (errno.ENOSPC, TransportError),
    ],
)
def test_errno(code: int, expected: type[TransportError]) -> None:
    error = raised(OSError(code, "reason text"))
    assert type(error) is expected
    assert error.reason == "reason text"
    assert str(error) == "on cluster during stat for '/p': reason text"


def test_timeouts_are_retryable() -> None:
    assert type(raised(TimeoutError())) is TransportTimeoutError
    assert raised(TimeoutError("timed out")).retryable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (asyncssh.SFTPNoSuchFile("gone"), PathNotFoundError),
        (asyncssh.SFTPPermissionDenied("no"), PermissionDeniedError),
        (asyncssh.SFTPFailure("Failure"), TransportError),
        (asyncssh.SFTPConnectionLost("lost"), ConnectionLostError),
        (asyncssh.SFTPFileAlreadyExists("there"), PathExistsError),
        (asyncssh.SFTPNotADirectory("file"), NotADirectoryTransportError),
        (asyncssh.SFTPFileIsADirectory("folder"), IsADirectoryTransportError),
        (asyncssh.HostKeyNotVerifiable("bad key"), HostKeyError),
        (asyncssh.PermissionDenied("denied"), AuthenticationError),
        (asyncssh.ConnectionLost("gone"), ConnectionLostError),
        (asyncssh.ChannelOpenError(2, "prohibited"), TransportError),
    ],
)
def test_asyncssh(exc: Exception, expected: type[TransportError]) -> None:
    error = raised(exc)
    assert type(error) is expected
    assert error.reason == exc.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (paramiko.AuthenticationException("no key"), AuthenticationError),
        (paramiko.SSHException("Server connection dropped"), ConnectionLostError),
        (NoValidConnectionsError({("127.0.0.1", 1): ConnectionRefusedError()}), ConnectionFailedError),
        (OSError(errno.ENOENT, "No such file"), PathNotFoundError),  # paramiko's SFTP "no such file"
        (OSError("Failure"), TransportError),  # paramiko's SFTP generic failure: no errno
        (EOFError(), ConnectionLostError),
    ],
)
def test_paramiko(exc: Exception, expected: type[TransportError]) -> None:
    assert type(raised(exc)) is expected


def test_connection_trouble_while_opening_is_a_failure_to_connect() -> None:
    assert type(raised(asyncssh.ConnectionLost("reset"), operation="open")) is ConnectionFailedError
    assert type(raised(paramiko.SSHException("Error reading SSH protocol banner"), operation="open")) is (
        ConnectionFailedError
    )
    assert raised(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), operation="open").retryable


def test_transport_errors_and_bugs_pass_unchanged() -> None:
    original = PathNotFoundError("gone", host="a", operation="get", path="/x")
    with pytest.raises(PathNotFoundError) as caught, map_exceptions(host="b", operation="stat"):
        raise original
    assert caught.value is original
    with pytest.raises(TypeError), map_exceptions(host="b", operation="stat"):
        raise TypeError("a bug")
    with pytest.raises(asyncio.CancelledError), map_exceptions(host="b", operation="stat"):
        raise asyncio.CancelledError
    assert translate(KeyError("x"), host="b", operation="stat") is None


async def test_map_exceptions_wraps_awaits() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise asyncssh.SFTPNoSuchFile("gone")

    with pytest.raises(PathNotFoundError), map_exceptions(host="b", operation="stat", path="/x"):
        await fails()
