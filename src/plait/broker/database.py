"""The database broker: bells with no server at all.

On PostgreSQL the bells are ``NOTIFY`` on the channels ``plait_bell`` and
``plait_control`` (the payload names the recipient), heard through one
``LISTEN`` connection per broker — across machines, as soon as the
notifying transaction commits.  On SQLite there is no cross-process signal:
a bell rung in this process wakes its waiters at once, and other processes
find the work at their next poll (a fraction of a second; an indexed
query).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING

from plait.broker.contract import Broker, BrokerError, wait_for_bell

if TYPE_CHECKING:
    from plait.storage.profile import Profile

__all__ = ["BELL_CHANNEL", "CONTROL_CHANNEL", "DatabaseBroker"]

LOGGER = logging.getLogger("plait.broker")
BELL_CHANNEL = "plait_bell"
CONTROL_CHANNEL = "plait_control"


class DatabaseBroker(Broker):
    """Bells through the profile's own database (see the module docstring)."""

    kind = "database"

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work = asyncio.Event()
        self._controls: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._is_postgres = profile.storage_backend == "postgresql"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._is_postgres and self._listener is None:
            ready: asyncio.Future[None] = self._loop.create_future()
            self._listener = self._loop.create_task(self._listen(ready), name="plait-pg-listen")
            await ready

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        import psycopg

        url = self.profile.storage_url.replace("postgresql+psycopg://", "postgresql://")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {BELL_CHANNEL}")
                    await conn.execute(f"LISTEN {CONTROL_CHANNEL}")
                    if not ready.done():
                        ready.set_result(None)
                    async for notice in conn.notifies():
                        if notice.channel == BELL_CHANNEL:
                            self._work.set()
                        elif notice.channel == CONTROL_CHANNEL:
                            event = self._controls.get(notice.payload)
                            if event is not None:
                                event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not ready.done():
                    ready.set_exception(BrokerError(f"cannot LISTEN on {self.profile.storage_url}: {exc}"))
                    return
                LOGGER.warning("LISTEN connection lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)

    # -- bells -------------------------------------------------------------------------------
    def _set_threadsafe(self, event: asyncio.Event) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def _notify(self, channel: str, payload: str = "") -> None:
        if not self._is_postgres:
            return
        try:
            from plait.storage import get_backend

            get_backend().notify(channel, payload)
        except Exception as exc:  # a bell must never break the caller
            LOGGER.warning("NOTIFY %s failed: %s", channel, exc)

    def ring_work(self) -> None:
        self._set_threadsafe(self._work)
        self._notify(BELL_CHANNEL)

    async def wait_for_work(self, timeout: float) -> bool:
        return await wait_for_bell(self._work, timeout)

    def ring_control(self, recipient: str) -> None:
        # remembered even if the recipient is not waiting yet: it finds the bell rung when it does
        self._set_threadsafe(self._controls.setdefault(recipient, asyncio.Event()))
        self._notify(CONTROL_CHANNEL, recipient)

    async def wait_for_control(self, recipient: str, timeout: float) -> bool:
        event = self._controls.setdefault(recipient, asyncio.Event())
        return await wait_for_bell(event, timeout)

    async def describe(self) -> str:
        if self._is_postgres:
            return "database (PostgreSQL LISTEN/NOTIFY)"
        return "database (SQLite, polling)"
