"""The transport layer: how plait reaches a computer.

This package stands alone: it imports nothing else from plait, and importing
it loads neither asyncssh nor paramiko (the plugins import them when used).

* The contract — :class:`Transport` (async) and its twin
  :class:`BlockingTransport`, with :class:`FileAttributes` and
  :class:`CommandResult` (:mod:`plait.transports.contract`).
* The errors — :class:`TransportError` and its subclasses
  (:mod:`plait.transports.errors`).
* The adapters — :func:`as_async` and :func:`as_blocking`
  (:mod:`plait.transports.adapters`).
* The pool — :class:`TransportPool` (:mod:`plait.transports.pool`).
* The plugins — found by name with :func:`get_transport_class`: ``local``,
  ``ssh`` (asyncssh) and ``ssh-blocking`` (paramiko) are built in.
* The test kit — :mod:`plait.transports.testing` (imports pytest).
"""

from .adapters import AsyncAdapter, BlockingAdapter, as_async, as_blocking
from .contract import BlockingTransport, CommandResult, FileAttributes, LocalPath, Transport
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
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from .plugins import get_transport_class, load_transport_plugins, transport_plugin_names
from .pool import PooledTransport, PoolStatistics, TransportPool

__all__ = [
    "AsyncAdapter",
    "AuthenticationError",
    "BlockingAdapter",
    "BlockingTransport",
    "CommandResult",
    "ConnectionFailedError",
    "ConnectionLostError",
    "FileAttributes",
    "HostKeyError",
    "IsADirectoryTransportError",
    "LocalPath",
    "NotADirectoryTransportError",
    "PathExistsError",
    "PathNotFoundError",
    "PermissionDeniedError",
    "PoolStatistics",
    "PooledTransport",
    "Transport",
    "TransportClosedError",
    "TransportError",
    "TransportPool",
    "TransportTimeoutError",
    "as_async",
    "as_blocking",
    "get_transport_class",
    "load_transport_plugins",
    "transport_plugin_names",
]
