"""Ringing the work bell from anywhere (a script's ``submit``, a step thread, a worker).

A process-wide :class:`~plait.broker.Broker` does the ringing.  A daemon
worker installs its own (:func:`set_ringer`); elsewhere one is started on
the engine's background loop the first time a bell is rung, so a blocking
caller never needs a loop of its own.  Ringing never blocks and never
raises: a bell that is lost costs one poll interval.

State bells (:func:`ring_state`, rung by the lifecycle after each commit)
reach the watchers of this interpreter directly and, through a broker that
is already running here (a daemon worker's, or the one a ``submit`` started),
the watchers of every other interpreter of the profile.  Ringing one never
starts a broker: with nobody listening it costs a dictionary look-up.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["listen_state", "ring_control", "ring_state", "ring_work", "set_ringer"]

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


#: the state-bell listeners of this interpreter, by process pk (see :func:`listen_state`)
_state_listeners: dict[int, list[Callable[[], None]]] = {}


def ring_state(pk: int) -> None:
    """Tell whoever watches process ``pk`` that its row changed (call after the commit).

    Never blocks, never raises, never connects: the listeners of this interpreter are called,
    and a broker already running here rings the others.
    """
    listeners = _state_listeners.get(pk)
    if listeners:
        for notify in list(listeners):
            try:
                notify()
            except Exception as exc:  # a listener must not break a transition
                LOGGER.debug("a state listener of process %s failed: %s", pk, exc)
    ringer = _ringer
    if ringer is None:
        return
    try:
        from plait.storage import get_profile

        if _ringer_profile == get_profile().name:
            ringer.ring_state(pk)
    except Exception as exc:
        LOGGER.debug("state bell of process %s not rung: %s", pk, exc)


async def _on_loop_of(broker: Any, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` on ``broker``'s loop (it may be this one, or the engine's background loop)."""
    loop = getattr(broker, "_loop", None)
    if loop is None or loop is asyncio.get_running_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


async def listen_state(pk: int, notify: Callable[[], None]) -> Callable[[], Coroutine[Any, Any, None]]:
    """Call ``notify()`` each time process ``pk``'s state bell rings; returns the coroutine function
    that stops it.

    ``notify`` is called from the ringing thread or the broker's loop: it must be thread-safe
    (``loop.call_soon_threadsafe``), cheap, and not raise.  In-process bells always arrive; bells
    from other interpreters arrive when the profile's broker carries them (RabbitMQ, or the database
    broker on PostgreSQL) and can be reached — otherwise this still returns, and the caller's poll
    is all there is.  Never raises.
    """
    local = _state_listeners.setdefault(pk, [])
    local.append(notify)
    broker: Any = None
    broker_stop: Callable[[], Coroutine[Any, Any, None]] | None = None
    try:
        broker = await asyncio.to_thread(_get_ringer)
        if broker is not None:
            broker_stop = await _on_loop_of(broker, broker.listen_state(pk, notify))
    except asyncio.CancelledError:
        _forget(pk, local, notify)
        raise
    except Exception as exc:
        LOGGER.info("state bells of process %s not heard (%s): following it by polling", pk, exc)

    async def stop() -> None:
        _forget(pk, local, notify)
        if broker_stop is not None:
            try:
                await _on_loop_of(broker, broker_stop())
            except Exception as exc:  # the broker closed meanwhile: nothing left to stop
                LOGGER.debug("stopping the state bells of process %s: %s", pk, exc)

    return stop


def _forget(pk: int, local: list[Callable[[], None]], notify: Callable[[], None]) -> None:
    if notify in local:
        local.remove(notify)
    if not local and _state_listeners.get(pk) is local:
        del _state_listeners[pk]
