"""The one error hierarchy of the transport layer.

Every transport plugin translates its library's failures (``OSError``,
asyncssh, paramiko, SFTP status codes) into these classes at the plugin
boundary, always with ``raise ... from exc`` so that the original error stays
reachable as ``__cause__``.  Code above the transport layer (CalcJob tasks,
the scheduler plugins, the CLI) only ever catches :class:`TransportError` and
its subclasses, and decides between *retry*, *pause* and *fail* from
:attr:`TransportError.retryable` instead of matching on strings.

A message always says which host, which operation and which path, so a user
reading it in ``plait process report`` knows what to fix.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "HostKeyError",
    "IsADirectoryTransportError",
    "NotADirectoryTransportError",
    "PathExistsError",
    "PathNotFoundError",
    "PermissionDeniedError",
    "TransportClosedError",
    "TransportError",
    "TransportTimeoutError",
]


class TransportError(Exception):
    """Root of every error that a transport raises.

    Attributes:
        host: the host the transport talks to (``"localhost"`` for local).
        operation: the contract method that failed (``"put"``, ``"exec_command_wait"``...).
        path: the remote path concerned, when there is one.
        reason: the human-readable reason, without host/path decoration.
        retryable: True when trying the same operation again later may succeed
            (connection trouble, time-outs); False when it cannot (missing
            file, permission denied, bad credentials).
    """

    #: default for the class; an instance may override it.
    retryable: bool = False

    def __init__(
        self,
        reason: str,
        *,
        host: str | None = None,
        operation: str | None = None,
        path: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.reason = reason
        self.host = host
        self.operation = operation
        self.path = path
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.host:
            where.append(f"on {self.host}")
        if self.operation:
            where.append(f"during {self.operation}")
        if self.path:
            where.append(f"for '{self.path}'")
        prefix = " ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # keep the structured fields when copied
        return (
            _rebuild,
            (type(self), self.reason, self.host, self.operation, self.path, self.retryable),
        )


def _rebuild(
    cls: type[TransportError],
    reason: str,
    host: str | None,
    operation: str | None,
    path: str | None,
    retryable: bool,
) -> TransportError:
    return cls(reason, host=host, operation=operation, path=path, retryable=retryable)


class PathNotFoundError(TransportError):
    """The path (or its parent folder) does not exist."""


class PathExistsError(TransportError):
    """The target already exists and the operation does not overwrite it."""


class IsADirectoryTransportError(TransportError):
    """A file operation was given a folder."""


class NotADirectoryTransportError(TransportError):
    """A folder operation was given something that is not a folder."""


class PermissionDeniedError(TransportError):
    """The remote user may not read, write or execute the path."""


class ConnectionFailedError(TransportError):
    """The connection could not be opened (refused, unreachable, DNS...)."""

    retryable = True


class ConnectionLostError(TransportError):
    """An open connection dropped while an operation was in flight."""

    retryable = True


class TransportClosedError(TransportError):
    """The transport is not open (never opened, or already closed)."""


class AuthenticationError(TransportError):
    """The server refused every offered credential (key, agent, password)."""


class HostKeyError(TransportError):
    """The server's host key is unknown or differs from the one in known_hosts.

    plait refuses such a server unless the user explicitly allows unknown host
    keys for that computer; a *changed* key is always refused.
    """


class TransportTimeoutError(TransportError):
    """An operation or a command did not finish within its time limit."""

    retryable = True
