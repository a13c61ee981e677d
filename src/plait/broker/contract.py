"""The broker contract: bells, and nothing that must not be lost.

plait keeps everything that matters in the database: which processes must
run (their state, lease and waits), control requests and their replies
(``broker_messages``).  The broker only *rings bells* so that the ones
concerned look at the database at once instead of at their next poll:

* the **work bell** — "a process may have become runnable" (submitted,
  played, or its last awaited child ended); daemon workers then claim
  what is runnable;
* the **control bell** of a runner — "there is a control request for you"
  (pause, play, kill, status), addressed by the runner's lease-owner id;
* the **state bell** of a process — "process ``pk``'s row changed" (state,
  paused flag, status line, job stage, checkpoint), rung by the lifecycle
  after each commit; :func:`plait.watch` listens for it and re-reads the row.

A lost bell costs a poll interval, never a process: every waiter also
polls.  Bells are fire-and-forget and acknowledged on receipt, so nothing
hangs on a message staying unacknowledged (RabbitMQ's ``consumer_timeout``
cannot bite).

Two implementations: :class:`~plait.broker.database.DatabaseBroker` (no
server; PostgreSQL ``LISTEN/NOTIFY``, or polling on SQLite) and
:class:`~plait.broker.rabbitmq.RabbitMQBroker` (aio-pika).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.storage.profile import Profile

__all__ = ["Broker", "BrokerError", "StopListening", "wait_for_bell"]

#: what :meth:`Broker.listen_state` returns: await it to stop listening (twice is a no-op)
StopListening = Callable[[], Coroutine[Any, Any, None]]


async def wait_for_bell(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` passes (False); the bell is cleared either way."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    finally:
        event.clear()
    return True


class BrokerError(Exception):
    """The broker cannot be reached or used (the message says which and why)."""


class Broker(abc.ABC):
    """Bells between processes of one profile.  Use on one event loop; :meth:`ring_work` is thread-safe."""

    kind: str = ""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (and start listening).  Raises BrokerError when the broker cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; closing twice is a no-op."""

    @abc.abstractmethod
    def ring_work(self) -> None:
        """Tell every worker that work may be runnable.  Thread-safe, never blocks, never raises."""

    @abc.abstractmethod
    async def wait_for_work(self, timeout: float) -> bool:
        """Wait until the work bell rings (True) or ``timeout`` seconds pass (False)."""

    @abc.abstractmethod
    def ring_control(self, recipient: str) -> None:
        """Tell runner ``recipient`` that a control request waits for it in the database."""

    @abc.abstractmethod
    async def wait_for_control(self, recipient: str, timeout: float) -> bool:
        """Wait until ``recipient``'s control bell rings (True) or ``timeout`` passes (False)."""

    def ring_state(self, pk: int) -> None:
        """Announce that process ``pk``'s row changed (committed already).  Thread-safe, never blocks,
        never raises; a bell nobody listens for is dropped.  The default rings nothing."""
        return

    async def listen_state(self, pk: int, notify: Callable[[], None]) -> StopListening:
        """Call ``notify()`` (from this broker's loop) each time :meth:`ring_state` rings for ``pk``,
        in any interpreter of the profile, until the returned coroutine function is awaited.

        Call on the broker's own loop.  ``notify`` must be cheap and must not raise (hand the news
        to your own loop with ``call_soon_threadsafe``).

        Raises:
            BrokerError: this broker cannot carry state bells (the default: the caller polls instead).
        """
        raise BrokerError(f"the {self.kind or 'this'} broker carries no state bells")

    async def describe(self) -> str:
        """One line for ``plait status`` (raises BrokerError when unreachable)."""
        return self.kind
