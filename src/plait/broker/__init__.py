"""The broker layer: bells that tell workers and runners to look at the database.

See :mod:`plait.broker.contract` for why nothing important travels through
the broker, :mod:`plait.broker.database` (no server) and
:mod:`plait.broker.rabbitmq` for the two implementations, and
:mod:`plait.broker.control` for control requests stored in the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plait.broker.contract import Broker, BrokerError, StopListening

if TYPE_CHECKING:
    from plait.storage.profile import Profile

__all__ = ["Broker", "BrokerError", "StopListening", "create_broker"]


def create_broker(profile: Profile) -> Broker:
    """The broker a profile names: ``database`` (default) or an ``amqp://`` URL (not started yet)."""
    url = profile.broker_url
    if url == "database":
        from plait.broker.database import DatabaseBroker

        return DatabaseBroker(profile)
    if url.startswith(("amqp://", "amqps://")):
        from plait.broker.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(profile)
    raise BrokerError(f"profile '{profile.name}' names an unknown broker '{url}'")
