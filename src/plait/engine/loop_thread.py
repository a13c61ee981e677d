"""The engine's own event loop in a background thread.

Used by the blocking API when the calling thread already runs a loop (a
Jupyter kernel, an async web server calling sync code): the work is handed
to this loop and the caller waits for the result.  The caller's loop is
never touched, never re-entered, and no second loop is run in its thread.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["engine_loop", "run_on_engine_loop"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def engine_loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use (a daemon thread named ``plait-engine-loop``)."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=serve, name="plait-engine-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def engine_loop_if_running() -> asyncio.AbstractEventLoop | None:
    """The background loop if it was started and still runs, else None (never starts it)."""
    if _loop is not None and not _loop.is_closed() and _thread is not None and _thread.is_alive():
        return _loop
    return None


def is_engine_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run_on_engine_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and wait for its result in the calling thread.

    Raises:
        RuntimeError: called from the background loop's own thread (that would deadlock).
    """
    if is_engine_loop_thread():
        coro.close()
        raise RuntimeError("run_on_engine_loop() called on the engine loop itself: use await instead")
    future = asyncio.run_coroutine_threadsafe(coro, engine_loop())
    try:
        return future.result()
    except BaseException:
        # an interrupted caller (Ctrl-C in a notebook cell) cancels the work, as asyncio.run does:
        # a top-level launch is then recorded killed, on the engine loop, which goes on running
        future.cancel()
        raise


def _stop() -> None:
    if _loop is not None and not _loop.is_closed():
        _loop.call_soon_threadsafe(_loop.stop)


atexit.register(_stop)
