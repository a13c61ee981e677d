"""The broker: rings the bell when there is work, carries control requests and notifications.

(Being written: the database broker and the RabbitMQ broker.)
"""

from __future__ import annotations

import logging

LOGGER = logging.getLogger("plait.broker")


def ring_bell(pk: int) -> None:
    """Tell daemon workers that process ``pk`` is ready to run."""
    LOGGER.warning("process %s was submitted, but no daemon is running to run it", pk)
