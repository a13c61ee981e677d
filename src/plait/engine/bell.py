"""Ringing the work bell from anywhere (a script's ``submit``, a step thread, a worker).

A process-wide :class:`~plait.broker.Broker` does the ringing.  A daemon
worker installs its own (:func:`set_ringer`); elsewhere one is started on
the engine's background loop the first time a bell is rung, so a blocking
caller never needs a loop of its own.  Ringing never blocks and never
raises: a bell that is lost costs one poll interval.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Any

__all__ = ["ring_control", "ring_work", "set_ringer"]

LOGGER = logging.getLogger("plait.bell")
_lock = threading.Lock()
_ringer: Any = None
_ringer_profile: str | None = None
#: after a failed connection, do not try again for this long (a submit must not wait on it each time)
RETRY_AFTER = 60.0
_failed_until: dict[str, float] = {}


def set_ringer(broker: Any) -> None:
    """Use ``broker`` (started on its loop) for every bell of this interpreter."""
    global _ringer, _ringer_profile
    with _lock:
        _ringer, _ringer_profile = broker, broker.profile.name


def _get_ringer() -> Any:
    global _ringer, _ringer_profile
    from plait.storage import get_profile

    profile = get_profile()
    with _lock:
        if _ringer is not None and _ringer_profile == profile.name:
            return _ringer
        if profile.broker_url == "database" and profile.storage_backend == "sqlite":
            return None  # workers in other processes poll; there is nothing to ring
        if time.monotonic() < _failed_until.get(profile.name, 0.0):
            return None
        from plait.broker import create_broker
        from plait.engine.loop_thread import run_on_engine_loop

        if _ringer is not None:  # the bell of the profile used before: close it, or it listens on
            old, _ringer = _ringer, None
            try:
                run_on_engine_loop(old.close())
            except Exception as exc:
                LOGGER.debug("closing the bell broker of profile %s failed: %s", _ringer_profile, exc)
        broker = create_broker(profile)
        try:
            run_on_engine_loop(broker.start())
        except Exception:
            _failed_until[profile.name] = time.monotonic() + RETRY_AFTER
            raise
        _ringer, _ringer_profile = broker, profile.name
        global _closer_registered
        if not _closer_registered:
            atexit.register(_close_ringer)
            _closer_registered = True
        return broker


_closer_registered = False


def _close_ringer() -> None:
    """At exit: close the bell broker on the engine loop, so no connection dies half-open."""
    from plait.engine.loop_thread import engine_loop_if_running, run_on_engine_loop

    ringer = _ringer
    if ringer is None or engine_loop_if_running() is None:
        return
    try:
        run_on_engine_loop(ringer.close())
    except Exception as exc:  # exiting anyway
        LOGGER.debug("closing the bell broker failed: %s", exc)


def ring_work() -> None:
    """Tell the daemon workers of the current profile that work may be runnable."""
    try:
        ringer = _get_ringer()
        if ringer is not None:
            ringer.ring_work()
    except Exception as exc:
        LOGGER.info("work bell not rung (%s); workers will find the work at their next poll", exc)


def ring_control(recipient: str) -> None:
    """Tell runner ``recipient`` that a control request waits for it."""
    try:
        ringer = _get_ringer()
        if ringer is not None:
            ringer.ring_control(recipient)
    except Exception as exc:
        LOGGER.info("control bell not rung (%s); the runner will see the request at its next poll", exc)
