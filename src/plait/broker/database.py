"""The database broker: bells with no server at all.

On PostgreSQL the bells are ``NOTIFY`` on the channels ``plait_bell``,
``plait_control`` (the payload names the recipient) and ``plait_state`` (the
payload: the pks whose rows changed, comma-separated), heard through one
``LISTEN`` connection per broker — across machines, as soon as the
notifying transaction commits.  State bells are sent from the broker's own
loop, a burst in one ``NOTIFY``, never from the thread that committed the
change, so they add no round trip to a transition.  On SQLite there is no
cross-process signal: a bell rung in this process wakes its waiters at
once, and other processes find the work (and watchers the change) at their
next poll (a fraction of a second; an indexed query).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from plait.broker.contract import Broker, BrokerError, StopListening, wait_for_bell

if TYPE_CHECKING:
    from plait.storage.profile import Profile

__all__ = ["BELL_CHANNEL", "CONTROL_CHANNEL", "STATE_CHANNEL", "DatabaseBroker"]

LOGGER = logging.getLogger("plait.broker")
BELL_CHANNEL = "plait_bell"
CONTROL_CHANNEL = "plait_control"
STATE_CHANNEL = "plait_state"
#: a NOTIFY payload must stay under 8000 bytes: this many pks per state NOTIFY
_PKS_PER_NOTIFY = 500


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
        self._state_listeners: dict[int, list[Callable[[], None]]] = {}
        self._states_pending: set[int] = set()
        self._listening = False

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
                    await conn.execute(f"LISTEN {STATE_CHANNEL}")
                    self._listening = True
                    if not ready.done():
                        ready.set_result(None)
                    async for notice in conn.notifies():
                        if notice.channel == BELL_CHANNEL:
                            self._work.set()
                        elif notice.channel == CONTROL_CHANNEL:
                            event = self._controls.get(notice.payload)
                            if event is not None:
                                event.set()
                        elif notice.channel == STATE_CHANNEL:
                            self._heard_states(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._listening = False
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
        if event.is_set():
            # rung already and not yet heard: the waiter clears it when it wakes, before it looks
            # for work, so it sees what was committed before this ring too (a worker submitting
            # thousands of children would otherwise wake its loop through the self-pipe for each)
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

    # -- state bells (PostgreSQL only; on SQLite watchers poll) -------------------------------------
    def ring_state(self, pk: int) -> None:
        if not self._is_postgres:
            return
        with self._lock:
            first = not self._states_pending
            self._states_pending.add(pk)
        if not first:  # a NOTIFY is on its way already: it takes this pk too
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            # an empty context: the caller's would carry its open transaction (a ContextVar) into the
            # NOTIFY thread, which would then use that connection from a second thread
            loop.call_soon_threadsafe(self._start_state_notify, context=contextvars.Context())
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _start_state_notify(self) -> None:
        task = asyncio.ensure_future(self._notify_states())
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _notify_states(self) -> None:
        with self._lock:
            pks, self._states_pending = sorted(self._states_pending), set()
        chunks = [pks[i : i + _PKS_PER_NOTIFY] for i in range(0, len(pks), _PKS_PER_NOTIFY)]

        def send() -> None:
            for chunk in chunks:
                self._notify(STATE_CHANNEL, ",".join(map(str, chunk)))

        await asyncio.to_thread(send)

    def _heard_states(self, payload: str) -> None:
        for part in payload.split(","):
            try:
                pk = int(part)
            except ValueError:
                continue
            for notify in list(self._state_listeners.get(pk, ())):
                notify()

    async def listen_state(self, pk: int, notify: Callable[[], None]) -> StopListening:
        if not self._is_postgres:
            raise BrokerError("the database broker on SQLite carries no state bells between processes")
        if not self._listening:
            raise BrokerError(f"not listening on {self.profile.storage_url} (the connection is down)")
        listeners = self._state_listeners.setdefault(pk, [])
        listeners.append(notify)

        async def stop() -> None:
            if notify in listeners:
                listeners.remove(notify)
            if not listeners and self._state_listeners.get(pk) is listeners:
                del self._state_listeners[pk]

        return stop

    async def describe(self) -> str:
        if self._is_postgres:
            return "database (PostgreSQL LISTEN/NOTIFY)"
        return "database (SQLite, polling)"
