"""The RabbitMQ broker (aio-pika), for sites that run RabbitMQ.

Two exchanges per profile, both non-durable (a bell that nobody hears is
simply dropped; the database still says what must run):

* ``plait.<profile>.<uuid>.work`` — fanout; every worker binds an exclusive,
  auto-deleted queue and consumes with ``no_ack`` (acknowledged on
  receipt: no message ever stays unacknowledged, so RabbitMQ's
  ``consumer_timeout`` has nothing to time out);
* ``plait.<profile>.<uuid>.control`` — direct; a runner binds its queue with its
  own lease-owner id as routing key.

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
from typing import TYPE_CHECKING, Any

from plait.broker.contract import Broker, BrokerError, wait_for_bell

if TYPE_CHECKING:
    from plait.storage.profile import Profile

__all__ = ["RabbitMQBroker", "exchange_names"]

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


class RabbitMQBroker(Broker):
    """Bells over RabbitMQ (see the module docstring)."""

    kind = "rabbitmq"

    def __init__(self, profile: Profile, *, connect_timeout: float = 10.0) -> None:
        super().__init__(profile)
        self.url = profile.broker_url
        self.connect_timeout = connect_timeout
        self._work_name, self._control_name = exchange_names(profile)
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
