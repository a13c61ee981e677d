"""The RabbitMQ broker (aio-pika), for sites that run RabbitMQ.

Two exchanges per profile, both non-durable (a bell that nobody hears is
simply dropped; the database still says what must run):

* ``plait.<profile>.<uuid>.work`` — fanout; every worker binds an exclusive,
  auto-deleted queue and consumes with ``no_ack`` (acknowledged on
  receipt: no message ever stays unacknowledged, so RabbitMQ's
  ``consumer_timeout`` has nothing to time out);
* ``plait.<profile>.<uuid>.control`` — direct; a runner binds its queue with its
  own lease-owner id as routing key;
* ``plait.<profile>.<uuid>.state`` — direct; the state bell of process ``pk``
  has routing key ``str(pk)``.  A broker that watches binds its one state
  queue once per watched pk; a bell for a pk nobody watches is routed
  nowhere and dropped by RabbitMQ at once, so ringing costs a one-way
  publish (no confirm is awaited on the ringer's hot path), and bells rung
  in a burst go out together.

``<uuid>`` is the profile's unique id (``uuid`` in ``profile.toml``): two
installations that both call their profile ``default`` and share a virtual
host never hear each other's bells.  (The queues are server-named.)  Every
process of one profile must run a plait that names exchanges this way:
restart the daemon after upgrading from a plait that did not.

The connection is *robust*: when RabbitMQ restarts it reconnects and
re-declares the queues and consumers; meanwhile waiters keep polling the
database, so processes keep finishing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plait.broker.contract import Broker, BrokerError, StopListening, wait_for_bell

if TYPE_CHECKING:
    from plait.storage.profile import Profile

__all__ = ["RabbitMQBroker", "exchange_names", "state_exchange_name"]

LOGGER = logging.getLogger("plait.broker")


def exchange_names(profile: Profile) -> tuple[str, str]:
    """The names of the profile's work and control exchanges: ``plait.<name>.<uuid>.work|control``.

    Raises:
        BrokerError: the profile has no uuid (a Profile made by hand, not by load_profile_config).
    """
    if not profile.uuid:
        raise BrokerError(f"profile '{profile.name}' has no uuid: load it with plait.storage.load_profile")
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", profile.name)
    return f"plait.{prefix}.{profile.uuid}.work", f"plait.{prefix}.{profile.uuid}.control"


def state_exchange_name(profile: Profile) -> str:
    """The name of the profile's state-bell exchange: ``plait.<name>.<uuid>.state``.

    Raises:
        BrokerError: the profile has no uuid.
    """
    return exchange_names(profile)[0].removesuffix(".work") + ".state"


class RabbitMQBroker(Broker):
    """Bells over RabbitMQ (see the module docstring)."""

    kind = "rabbitmq"

    def __init__(self, profile: Profile, *, connect_timeout: float = 10.0) -> None:
        super().__init__(profile)
        self.url = profile.broker_url
        self.connect_timeout = connect_timeout
        self._work_name, self._control_name = exchange_names(profile)
        self._state_name = state_exchange_name(profile)
        self._state_exchange: Any = None
        self._state_queue: Any = None
        self._state_listeners: dict[int, list[Callable[[], None]]] = {}
        self._states_lock = threading.Lock()
        self._states_pending: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Any = None
        self._channel: Any = None
        self._work_exchange: Any = None
        self._control_exchange: Any = None
        self._work = asyncio.Event()
        self._work_queue: Any = None
        self._controls: dict[str, asyncio.Event] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._work_pending = False

    @property
    def display_url(self) -> str:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", self.url)

    async def start(self) -> None:
        import aio_pika

        self._loop = asyncio.get_running_loop()
        try:
            self._connection = await aio_pika.connect_robust(self.url, timeout=self.connect_timeout)
            self._channel = await self._connection.channel()
            self._work_exchange = await self._channel.declare_exchange(
                self._work_name, aio_pika.ExchangeType.FANOUT, durable=False
            )
            self._control_exchange = await self._channel.declare_exchange(
                self._control_name, aio_pika.ExchangeType.DIRECT, durable=False
            )
            self._state_exchange = await self._channel.declare_exchange(
                self._state_name, aio_pika.ExchangeType.DIRECT, durable=False
            )
        except Exception as exc:
            await self.close()
            raise BrokerError(f"cannot reach RabbitMQ at {self.display_url}: {exc}") from exc

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._connection is not None:
            try:
                await self._connection.close()
            except Exception:  # closing a broken connection
                pass
        self._connection = self._channel = None
        self._state_exchange = self._state_queue = None
        self._state_listeners.clear()

    # -- publishing (thread-safe entry points) ---------------------------------------------------
    def _schedule(self, coro_factory: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def start() -> None:
            task = loop.create_task(coro_factory())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            start()
        else:
            loop.call_soon_threadsafe(start)

    async def _publish(self, exchange: Any, routing_key: str) -> None:
        import aio_pika

        if exchange is None:
            return
        try:
            await exchange.publish(aio_pika.Message(body=b"", expiration=60), routing_key=routing_key)
        except Exception as exc:  # a lost bell costs one poll interval
            LOGGER.info("could not ring %s/%s: %s", exchange.name, routing_key, exc)

    def ring_work(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._work.set)
        if self._work_pending:  # a bell is already on its way: one is enough for the whole burst
            return
        self._work_pending = True

        async def publish() -> None:
            self._work_pending = False
            await self._publish(self._work_exchange, "")

        self._schedule(publish)

    def ring_control(self, recipient: str) -> None:
        self._schedule(lambda: self._publish(self._control_exchange, recipient))

    async def publish_work(self) -> None:
        """Ring the work bell and return once it is handed to RabbitMQ."""
        await self._publish(self._work_exchange, "")

    async def publish_control(self, recipient: str) -> None:
        await self._publish(self._control_exchange, recipient)

    def ring_state(self, pk: int) -> None:
        if self._state_exchange is None:
            return
        with self._states_lock:
            first = not self._states_pending
            self._states_pending.add(pk)
        if first:  # one task publishes the whole burst
            self._schedule(self._publish_states)

    async def _publish_states(self) -> None:
        import aio_pika

        with self._states_lock:
            pks, self._states_pending = self._states_pending, set()
        exchange = self._state_exchange
        if exchange is None:
            return
        try:
            publishing = [
                exchange.publish(aio_pika.Message(body=b"", expiration=60), routing_key=str(pk)) for pk in pks
            ]
            await asyncio.gather(*publishing)
        except Exception as exc:  # a lost state bell costs the watcher one poll interval
            LOGGER.info("could not ring the state bells of %s: %s", sorted(pks), exc)

    async def listen_state(self, pk: int, notify: Callable[[], None]) -> StopListening:
        if self._channel is None or self._state_exchange is None:
            raise BrokerError(f"not connected to RabbitMQ at {self.display_url}")
        listeners = self._state_listeners.setdefault(pk, [])
        listeners.append(notify)
        try:
            if self._state_queue is None:
                queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
                if self._state_queue is None:
                    self._state_queue = queue
                    await queue.consume(self._on_state, no_ack=True)
            if len(listeners) == 1:
                await self._state_queue.bind(self._state_exchange, routing_key=str(pk))
        except Exception as exc:
            listeners.remove(notify)
            raise BrokerError(f"cannot listen for the state bells of process {pk}: {exc}") from exc

        async def stop() -> None:
            if notify not in listeners:
                return
            listeners.remove(notify)
            if not listeners and self._state_listeners.get(pk) is listeners:
                del self._state_listeners[pk]
                try:
                    await self._state_queue.unbind(self._state_exchange, routing_key=str(pk))
                except Exception as exc:  # a binding left behind only routes bells nobody hears
                    LOGGER.debug("unbinding the state bells of %s failed: %s", pk, exc)

        return stop

    async def _on_state(self, message: Any) -> None:
        try:
            pk = int(message.routing_key)
        except (TypeError, ValueError):
            return
        for notify in list(self._state_listeners.get(pk, ())):
            notify()

    # -- listening ---------------------------------------------------------------------------------
    async def _bind(self, exchange: Any, routing_key: str, event: asyncio.Event) -> Any:
        queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=routing_key)

        async def on_message(message: Any) -> None:
            event.set()

        await queue.consume(on_message, no_ack=True)
        return queue

    async def wait_for_work(self, timeout: float) -> bool:
        if self._work_queue is None and self._channel is not None:
            try:
                self._work_queue = await self._bind(self._work_exchange, "", self._work)
            except Exception as exc:
                LOGGER.info("cannot listen for work bells yet: %s", exc)
        return await wait_for_bell(self._work, timeout)

    async def wait_for_control(self, recipient: str, timeout: float) -> bool:
        event = self._controls.get(recipient)
        if event is None:
            event = self._controls[recipient] = asyncio.Event()
            if self._channel is not None:
                try:
                    await self._bind(self._control_exchange, recipient, event)
                except Exception as exc:
                    LOGGER.info("cannot listen for control bells yet: %s", exc)
        return await wait_for_bell(event, timeout)

    async def describe(self) -> str:
        if self._connection is None or self._connection.is_closed:
            raise BrokerError(f"not connected to RabbitMQ at {self.display_url}")
        return f"rabbitmq ({self.display_url})"
