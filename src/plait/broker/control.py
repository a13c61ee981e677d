"""Control requests (pause, play, kill, status) to the runner that holds a process.

A request is a row in ``broker_messages`` addressed to the holder's
lease-owner id (``recipient``), and the holder's control bell is rung.  The
holder takes its requests (marking them handled in the same transaction),
acts, and posts a reply row addressed to the requester.  Both sides also
poll, so a lost bell only delays; the requester gives up after its
timeout with a clear message.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from plait.broker.contract import Broker

__all__ = [
    "ACTIONS",
    "ControlRequest",
    "ControlServer",
    "ControlTimeout",
    "await_reply",
    "post_request",
    "wait_for_reply",
]

LOGGER = logging.getLogger("plait.control")
ACTIONS = ("pause", "play", "kill", "status")


class ControlTimeout(TimeoutError):
    """No reply arrived in time (the holder may be busy in a long step, or gone)."""


@dataclass
class ControlRequest:
    pk: int
    action: str
    payload: dict[str, Any] = field(default_factory=dict)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reply_to: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "payload": self.payload,
            "request_id": self.request_id,
            "reply_to": self.reply_to,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ControlRequest:
        body = row["body"]
        return cls(
            pk=row["process_id"],
            action=body["action"],
            payload=body.get("payload", {}),
            request_id=body["request_id"],
            reply_to=body.get("reply_to", ""),
        )


def _backend() -> Any:
    from plait.storage import get_backend

    return get_backend()


def post_request(recipient: str, request: ControlRequest) -> None:
    """Store a request for ``recipient`` (the caller rings its control bell afterwards)."""
    if request.action not in ACTIONS:
        raise ValueError(f"unknown control action '{request.action}' (known: {', '.join(ACTIONS)})")
    _backend().post_message("control", recipient, request.pk, request.body())


def take_reply(reply_to: str, request_id: str) -> dict[str, Any] | None:
    backend = _backend()
    if not backend.has_messages("reply", reply_to):
        return None
    found = None
    for row in backend.take_messages("reply", reply_to):
        if row["body"].get("request_id") == request_id:
            found = row["body"].get("result", {})
    return found


async def await_reply(reply_to: str, request_id: str, timeout: float) -> dict[str, Any]:
    """Wait (polling off the loop, more slowly as time goes) for the reply to ``request_id``.

    Raises:
        ControlTimeout: no reply within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    poll = 0.02
    while True:
        reply = await asyncio.to_thread(take_reply, reply_to, request_id)
        if reply is not None:
            return reply
        if time.monotonic() >= deadline:
            raise ControlTimeout(f"no reply within {timeout:g} s")
        await asyncio.sleep(poll)
        poll = min(poll * 1.5, 0.1)


def wait_for_reply(reply_to: str, request_id: str, timeout: float) -> dict[str, Any]:
    """Blocking :func:`await_reply` (from a thread that runs no loop).  Raises ControlTimeout."""
    return asyncio.run(await_reply(reply_to, request_id, timeout))


class ControlServer:
    """Serves the control requests addressed to one runner (``owner``) until cancelled.

    Args:
        handler: ``await handler(request) -> dict`` (the reply's result).
        broker: its control bell wakes the server early; None means poll only.
        poll_interval: seconds between looks at the database without a bell.
    """

    def __init__(
        self,
        owner: str,
        handler: Callable[[ControlRequest], Awaitable[dict[str, Any]]],
        broker: Broker | None = None,
        poll_interval: float = 0.25,
    ) -> None:
        self.owner = owner
        self.handler = handler
        self.broker = broker
        self.poll_interval = poll_interval
        self._stopping: asyncio.Event | None = None
        self._in_hand: set[asyncio.Future[None]] = set()

    def stop(self) -> None:
        """Stop after the requests in hand have their replies (call on the server's loop)."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        self._stopping.set()

    async def run(self) -> None:
        """Serve until :meth:`stop` (or cancellation); a request being handled always gets its reply."""
        backend = _backend()
        if self._stopping is None:
            self._stopping = asyncio.Event()
        stopping = self._stopping
        while not stopping.is_set():
            try:
                rows = []
                if await asyncio.to_thread(backend.has_messages, "control", self.owner):
                    rows = await asyncio.to_thread(backend.take_messages, "control", self.owner)
            except Exception as exc:  # the database may be briefly busy; try again
                LOGGER.warning("reading control requests failed: %s", exc)
                rows = []
            for row in rows:
                # each request is handled on its own: one that waits (a kill waiting for the
                # descendants it kills, which may be held here too) never holds up the next
                task = asyncio.ensure_future(self._answer(ControlRequest.from_row(row)))
                self._in_hand.add(task)
                task.add_done_callback(self._in_hand.discard)
            if stopping.is_set():
                break
            if self.broker is not None:
                bell: asyncio.Future[Any] = asyncio.ensure_future(
                    self.broker.wait_for_control(self.owner, self.poll_interval)
                )
            else:
                bell = asyncio.ensure_future(asyncio.sleep(self.poll_interval))
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait([bell, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                bell.cancel()
                stop.cancel()
        if self._in_hand:  # stopping: the requests in hand still get their replies
            await asyncio.wait(list(self._in_hand))

    @property
    def busy(self) -> bool:
        """True while requests taken from the database are being handled (their replies not yet posted)."""
        return bool(self._in_hand)

    async def _answer(self, request: ControlRequest) -> None:
        try:
            result = await self.handler(request)
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        try:
            await asyncio.to_thread(
                _backend().post_message,
                "reply",
                request.reply_to,
                request.pk,
                {"request_id": request.request_id, "result": result},
            )
        except Exception as exc:
            LOGGER.warning("could not post the reply to %s: %s", request.reply_to, exc)
            return
        if self.broker is not None:
            self.broker.ring_control(request.reply_to)
